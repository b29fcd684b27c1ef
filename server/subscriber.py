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

import contextlib
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from common.mqtt import client_for
from server import AnotherServer, ServerError
from server.config import MqttConfig
from wire.topics import server_claim

log = logging.getLogger(__name__)


class SubscriberError(ServerError):
    """The MQTT client cannot connect at all (bad options); TLS set-up errors are common.mqtt.MqttError."""


class ClientIdInUse(AnotherServer):
    """Another server holds this server's client id: two servers would take the session from each
    other, back and forth, each time re-sending every unacknowledged message."""


#: MQTT 5 DISCONNECT reason: another client connected with our client id (mosquitto 2.0 just closes
#: the connection instead, hence the claims below)
SESSION_TAKEN_OVER = 0x8E
#: our own QoS 1 publishes (dead letters, alert states, stored statements) in flight at once. paho scans
#: its outgoing messages from the oldest on every PUBACK until it finds one to send, so the cost of each
#: PUBACK grows with this number: at 1000, a flood of rejected messages made the dead letters' PUBACKs
#: the server's largest cost (11 % of its time in `_update_inflight` under 1 bad message per record).
#: The rest wait in paho's queue, in order, and go out as PUBACKs return (loopback: well under 1 ms).
PUBLISH_INFLIGHT = 64
#: takeovers by a client that makes no claim, within TAKEOVER_WINDOW_S, after which we give up
TAKEOVER_LIMIT = 5
TAKEOVER_WINDOW_S = 60.0
#: a server refreshes its retained claim this often; a claim older than CLAIM_STALE_S is a dead server's
CLAIM_EVERY_S = 10.0
CLAIM_STALE_S = 60.0


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
    """The server's session. It also claims its client id, retained on `claim_topic`, so that a second
    server started with the same id (the broker would hand the session back and forth between the
    two) finds the first one's claim and refuses to run; `instance` names this server's host and spool,
    so its own claim from before a restart is never taken for another server's."""

    def __init__(self, config: MqttConfig, inbox: queue.SimpleQueue[Received], client: mqtt.Client | None = None,
                 instance: str = "") -> None:
        self._time = time.monotonic
        self.config = config
        self.inbox = inbox
        self._generation = 0
        self._lock = threading.Lock()
        self.connected = threading.Event()
        #: the unit subscription of the current connection is in place (its SUBACK arrived)
        self.subscribed = threading.Event()
        self._subscribe_mid: int | None = None
        self._failed_logged = False
        #: set when this process must stop: another instance uses our client id
        self.fatal: ClientIdInUse | None = None
        self.takeovers = 0
        self._takeover_times: list[float] = []
        self._warned: set[str] = set()
        self.claim_topic = server_claim(config.client_id)
        self._claim: dict[str, Any] = {"token": secrets.token_hex(8), "instance": instance or socket.gethostname(),
                                       "pid": os.getpid(), "since": time.time()}
        self._claimed_at = 0.0
        # a server must not start without its password (unlike a unit, it has no outbox to fill)
        self.client = client or client_for(
            config, config.client_id, password=config.password(required=True) if config.username is not None else None,
            manual_ack=True, max_inflight=PUBLISH_INFLIGHT,
            reconnect_s=(config.reconnect_min_s, config.reconnect_max_s),
        )
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

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
        if self.fatal is None and self.connected.is_set():
            info = self._publish_claim("off")  # a stopped server leaves its client id free at once
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def refresh_claim(self) -> None:
        """Called often by the app; re-claims the client id every CLAIM_EVERY_S while connected."""
        if self.connected.is_set() and self.fatal is None and self._time() - self._claimed_at >= CLAIM_EVERY_S:
            self._publish_claim("on")

    def _publish_claim(self, state: str) -> mqtt.MQTTMessageInfo:
        self._claimed_at = self._time()
        payload = json.dumps({**self._claim, "state": state, "at": time.time()}).encode()
        return self.client.publish(self.claim_topic, payload, qos=1, retain=True)

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
        _, self._subscribe_mid = client.subscribe(self.config.subscription, qos=1)
        # and the retained claim of whoever held this client id before us
        client.subscribe(self.claim_topic, qos=1)
        self._publish_claim("on")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._failed_logged:
            log.error("cannot reach mqtt broker %s; retrying", self.where)
            self._failed_logged = True

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        if mid == self._subscribe_mid:
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        self.subscribed.clear()
        if rc.value == SESSION_TAKEN_OVER and self.fatal is None:
            now = self._time()
            self._takeover_times = [t for t in self._takeover_times if now - t < TAKEOVER_WINDOW_S] + [now]
            self.takeovers += 1
            if len(self._takeover_times) >= TAKEOVER_LIMIT:
                self._stand_down(client, f"{len(self._takeover_times)} session takeovers in {TAKEOVER_WINDOW_S:.0f} s "
                                         f"by a client with our client id {self.config.client_id!r}")
                return
        if was and self.fatal is None:
            log.warning("mqtt disconnected from %s: %s; reconnecting", self.where, rc)

    def _on_claim(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """Another server's claim on our client id. The later one stands down: a second server finds the
        first one's claim when it connects, and exits; the first one, pushed off its session by that
        connect, reconnects, reads the second's claim, sees it is the elder, and claims the id again."""
        if msg.qos:
            client.ack(msg.mid, msg.qos)  # manual acks: a claim is not data, nothing to store first
        try:
            claim = json.loads(msg.payload)
            other = (claim["token"] != self._claim["token"] and claim["state"] == "on"
                     and claim["instance"] != self._claim["instance"]  # not our own run from before a restart
                     and time.time() - float(claim["at"]) < CLAIM_STALE_S)
            elder = (float(claim["since"]), claim["token"]) < (float(self._claim["since"]), self._claim["token"])
        except (ValueError, TypeError, KeyError):
            return  # not a claim we can read: not a server we could be fighting
        if not other or self.fatal is not None:
            return
        what = (f"another gatewatch server ({claim['instance']}, pid {claim['pid']}) is connected with client id "
                f"{self.config.client_id!r}")
        if elder:
            self._stand_down(client, what)
            return
        if claim["token"] not in self._warned:
            self._warned.add(claim["token"])
            self.takeovers += 1
            log.warning("%s, started after us; it stands down, and we claim our session again", what)
        self._publish_claim("on")

    def _stand_down(self, client: mqtt.Client, what: str) -> None:
        self.fatal = ClientIdInUse(
            f"{what} on {self.where}: refusing to run two servers with one session. Stop the other one, or give "
            f"each server its own mqtt.client_id (and its own gates); if it is gone, start this one again in "
            f"{CLAIM_STALE_S:.0f} s")
        log.error("%s", self.fatal)
        client.disconnect()  # no reconnect: paho stops its retry loop once we disconnect

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)[:200]
        if topic == self.claim_topic:  # a plain compare: paho's filtered callbacks cost a match per message
            self._on_claim(client, userdata, msg)
            return
        self.inbox.put(Received(topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain), self._generation,
                                self._time()))
