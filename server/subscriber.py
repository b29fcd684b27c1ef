"""The server's MQTT link: a persistent QoS 1 session whose messages are acknowledged by hand.

paho normally sends PUBACK as soon as `on_message` returns, i.e. before the data is anywhere
durable; a crash then loses every message in the batch being built. With ``manual_ack=True``
the PUBACK is sent only when the app calls `ack`, after the batch is in InfluxDB or the spool.
Until then the broker keeps the message in our session (fixed client id, ``clean_start=False``,
MQTT 5 session expiry) and re-sends it after a crash or reconnect. The broker never has more
than ``receive_maximum`` unacknowledged messages in flight to us, which also bounds our memory.

An ack belongs to one connection: packet ids are reused, so an ack for a message received on
an earlier connection is dropped (the broker re-sends that message, and the idempotent write
makes the second copy harmless).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from dataclasses import dataclass
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from server import ServerError
from server.config import MqttConfig, secret_from_env

log = logging.getLogger(__name__)


class SubscriberError(ServerError):
    """The MQTT client cannot be set up (bad TLS file, bad options)."""


class ClientIdInUse(ServerError):
    """Another client holds this server's client id: two servers would take the session from each
    other, back and forth, each time re-sending every unacknowledged message."""


#: MQTT 5 DISCONNECT reason: another client connected with our client id
SESSION_TAKEN_OVER = 0x8E
#: a connection that lasted this long makes this process the incumbent of its client id
ESTABLISHED_S = 5.0
#: takeovers within TAKEOVER_WINDOW_S after which even the incumbent gives up
TAKEOVER_LIMIT = 5
TAKEOVER_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    generation: int
    received_at: float


class Subscriber:
    def __init__(self, config: MqttConfig, inbox: queue.Queue[Received], client: mqtt.Client | None = None) -> None:
        import time

        self._time = time.monotonic
        self.config = config
        self.inbox = inbox
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self._failed_logged = False
        #: set when this process must stop: another instance uses our client id
        self.fatal: ClientIdInUse | None = None
        self.takeovers = 0
        self._established = False
        self._connected_at = 0.0
        self._takeover_times: list[float] = []
        self.client = client or mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=config.client_id,
            protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True,
        )
        self.client.max_inflight_messages_set(1000)
        # paho accepts float delays; its int annotation is narrower than the implementation
        self.client.reconnect_delay_set(cast(int, config.reconnect_min_s), cast(int, config.reconnect_max_s))
        if config.username is not None:
            self.client.username_pw_set(config.username, secret_from_env(config.password_env, "mqtt.password_env"))
        if config.tls_ca_file is not None:
            try:
                self.client.tls_set(ca_certs=str(config.tls_ca_file), cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise SubscriberError(f"mqtt.tls_ca_file {config.tls_ca_file}: {exc}") from None
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    @property
    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        try:
            self.client.connect_async(
                self.config.host, self.config.port, keepalive=self.config.keepalive_s, clean_start=False,
                properties=props,
            )
        except (OSError, ValueError) as exc:
            raise SubscriberError(f"mqtt {self.where}: {exc}") from None
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def ack(self, mid: int, qos: int, generation: int) -> None:
        """PUBACK a message once its data is durable; a stale connection's acks are dropped."""
        if qos == 0:
            return
        with self._lock:
            if generation != self._generation or not self.connected.is_set():
                return
        self.client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    # -- paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            # refused (bad credentials, not authorised): not connected, whatever paho thinks
            log.error("mqtt broker %s refused the connection: %s", self.where, rc)
            self._failed_logged = True
            return
        with self._lock:
            self._generation += 1
        self._connected_at = self._time()
        self.connected.set()
        if self._failed_logged:
            log.warning("mqtt connected to %s", self.where)
        else:
            log.info("mqtt connected to %s (session present: %s)", self.where, flags.session_present)
        self._failed_logged = False
        client.subscribe(self.config.subscription, qos=1)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._failed_logged:
            log.error("cannot reach mqtt broker %s; retrying", self.where)
            self._failed_logged = True

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        now = self._time()
        if was and now - self._connected_at >= ESTABLISHED_S:
            self._established = True
        if rc.value == SESSION_TAKEN_OVER:
            self._taken_over(client, now)
            return
        if was:
            log.warning("mqtt disconnected from %s: %s; reconnecting", self.where, rc)

    def _taken_over(self, client: mqtt.Client, now: float) -> None:
        """Another client connected with our client id. The newcomer yields: a server that was
        never established exits; an established one takes its session back (the newcomer then
        yields), unless the takeovers go on, which means two established servers: then it exits."""
        self.takeovers += 1
        self._takeover_times = [t for t in self._takeover_times if now - t < TAKEOVER_WINDOW_S] + [now]
        who = f"client id {self.config.client_id!r} on {self.where}"
        if self._established and len(self._takeover_times) < TAKEOVER_LIMIT:
            log.warning("another client connected with %s and took our session; taking it back "
                        "(a second gatewatch server with this client id will stop)", who)
            return
        why = ("another gatewatch server is already connected with " + who if not self._established else
               f"{len(self._takeover_times)} session takeovers in {TAKEOVER_WINDOW_S:.0f} s with {who}")
        self.fatal = ClientIdInUse(f"{why}: refusing to run two servers with one session. Stop the other one, "
                                   "or give each server its own mqtt.client_id (and its own units to serve)")
        log.error("%s", self.fatal)
        client.disconnect()  # no reconnect: paho stops its retry loop once we disconnect

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)[:200]
        self.inbox.put(Received(topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain), self._generation,
                                self._time()))
