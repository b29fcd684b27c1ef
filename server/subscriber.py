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
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from common.mqtt import client_for
from server import ServerError
from server.config import MqttConfig

log = logging.getLogger(__name__)


class SubscriberError(ServerError):
    """The MQTT client cannot connect at all (bad options); TLS set-up errors are common.mqtt.MqttError."""


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
        # a server must not start without its password (unlike a unit, it has no outbox to fill)
        self.client = client or client_for(
            config, config.client_id, password=config.password(required=True) if config.username is not None else None,
            manual_ack=True, max_inflight=1000, reconnect_s=(config.reconnect_min_s, config.reconnect_max_s),
        )
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
        if was:
            log.warning("mqtt disconnected from %s: %s; reconnecting", self.where, rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)[:200]
        self.inbox.put(Received(topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain), self._generation,
                                self._time()))
