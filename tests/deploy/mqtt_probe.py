"""A real MQTT client (common.mqtt: VERSION2 callbacks, MQTT v5) for security tests.

The broker under test runs the shipped deploy/mosquitto/mosquitto.conf (`SHIPPED_CONF`), rendered
for a test machine by gatewatch.services.write_shipped_mosquitto_conf.
"""

from __future__ import annotations

import queue
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from common.mqtt import make_client

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


@dataclass
class Connect:
    """How a connection attempt ended: a CONNACK reason, or an error before any CONNACK."""

    ok: bool
    detail: str


@dataclass
class Probe:
    """One MQTT client with everything it saw collected for assertions."""

    port: int
    username: str | None = None
    password: str | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    client_id: str = "probe"
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    #: retained copies delivered on subscribe, kept apart so earlier tests' state cannot mix in
    retained: list[tuple[str, bytes]] = field(default_factory=list)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.disconnects = 0
        self._connack: queue.Queue[Connect] = queue.Queue()
        self._acked = threading.Condition()
        c = make_client(self.client_id, username=self.username, password=self.password, tls_ca_file=self.ca,
                        tls_cert_file=self.cert, tls_key_file=self.key)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        self.client = c

    def connect(self, timeout: float = 10.0) -> Connect:
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=10)
        except (OSError, ssl.SSLError) as exc:
            return Connect(False, f"{type(exc).__name__}: {exc}")
        self.client.loop_start()
        try:
            return self._connack.get(timeout=timeout)
        except queue.Empty:
            return Connect(False, "no CONNACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str, timeout: float = 5.0) -> list[ReasonCode]:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None, f"subscribe to {topic} was not sent"
        self._wait(lambda: mid in self.subacks, timeout, f"SUBACK for {topic}")
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0, retain: bool = False) -> ReasonCode:
        """QoS 1 publish; returns the PUBACK reason (v5 tells a refused publish apart)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self._wait(lambda: info.mid in self.pubacks, timeout, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def received_until(self, marker: bytes, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        """Everything received up to and including a marker payload sent after the test messages.

        The broker keeps a publisher's order on the way to each subscriber, so once the marker
        is here, anything that was going to be delivered before it has been.
        """
        got = []
        while True:
            topic, payload = self.messages.get(timeout=timeout)
            got.append((topic, payload))
            if payload == marker:
                return got

    def _wait(self, check: Any, timeout: float, what: str) -> None:
        with self._acked:
            if not self._acked.wait_for(check, timeout):
                raise TimeoutError(f"no {what} within {timeout}s")

    # paho callbacks (its network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None) -> None:
        self._connack.put(Connect(not rc.is_failure, str(rc)))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None) -> None:
        self.disconnects += 1
        self._connack.put(Connect(False, f"disconnected: {rc}"))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            self.retained.append((msg.topic, bytes(msg.payload)))
        else:
            self.messages.put((msg.topic, bytes(msg.payload)))

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode,
                    props: Properties | None) -> None:
        with self._acked:
            self.pubacks[mid] = rc
            self._acked.notify_all()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[ReasonCode],
                      props: Properties | None) -> None:
        with self._acked:
            self.subacks[mid] = rcs
            self._acked.notify_all()


def env_value(path: Path, var: str) -> str:
    """A password from a provisioned 0600 env file, as systemd's EnvironmentFile would read it."""
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == var:
            return value
    raise AssertionError(f"{var} not in {path}")
