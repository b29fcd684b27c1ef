"""Shared pieces for runtime tests: configs, a fake pipeline and a real MQTT subscriber."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.mqtt import make_client
from edge.config import UnitConfig
from wire.errors import WireError
from wire.payloads import (
    AlertMessage,
    CameraState,
    CountsMessage,
    HealthMessage,
    Message,
    StoredMessage,
    VehicleClass,
    WindowRecord,
    decode_message,
    encode,
    topic_for,
)

GATE = "huu-nghi"

#: mosquitto started as root drops to the `mosquitto` user, which cannot read pytest's private
#: tmp dirs (password file, persistence); stay root in that case so those files are usable.
UNIT = "u1"
START = datetime(2026, 11, 24, 8, 0, 0, tzinfo=UTC)


def unit_config(tmp: Path, port: int, *, lanes: int = 2, **over: Any) -> UnitConfig:
    raw: dict[str, Any] = {
        "gate": GATE,
        "unit": UNIT,
        "source": {"kind": "file", "path": str(tmp / "clip.mp4")},
        "lanes": [{"id": f"l{i}", "line": {"a": [0.0, 0.5], "b": [1.0, 0.5]}} for i in range(1, lanes + 1)],
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                 "keepalive_s": 5},
        "outbox": {"path": str(tmp / "outbox.sqlite3")},
        "health": {"interval_s": 3600},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return UnitConfig.model_validate(raw)


def make_records(n: int, lanes: int = 2, window_s: float = 10.0, first: int = 0) -> list[WindowRecord]:
    """Window i of every lane, with counts that differ per record so mix-ups show."""
    out = []
    for i in range(first, first + n):
        for lane in range(1, lanes + 1):
            out.append(
                WindowRecord(
                    gate=GATE, unit=UNIT, lane=f"l{lane}",
                    window_start=START + timedelta(seconds=i * window_s), window_s=window_s,
                    counts={VehicleClass.TRUCK: {"in": i % 7, "out": lane}, VehicleClass.CAR: {"in": (i * 3) % 11}},
                    frames=100 + i,
                )
            )
    return out


@dataclass
class FakeStats:
    fps: float = 12.5
    inference_ms: float = 48.0
    camera: CameraState = CameraState.UP
    frames: int = 0


class FakePipeline:
    """Yields prepared records, one every `interval_s`, like a pipeline closing windows."""

    def __init__(self, records: list[WindowRecord], interval_s: float = 0.0, hold_s: float = 0.0) -> None:
        self._records = records
        self.interval_s = interval_s
        self.hold_s = hold_s  # keep running this long after the last record (a live camera)
        self.stats = FakeStats()
        self.yielded = 0
        self.closed = False
        self._stop = threading.Event()

    def records(self) -> Iterator[WindowRecord]:
        for r in self._records:
            if self._stop.wait(self.interval_s):
                return
            self.stats.frames += 10
            self.yielded += 1
            yield r
        self._stop.wait(self.hold_s)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.closed = True


class Subscriber:
    """A real QoS 1 subscriber with a persistent session, so it misses nothing across a broker restart."""

    def __init__(self, port: int, topic: str, client_id: str = "test-sub") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = make_client(client_id, reconnect_s=(0.2, 1))
        self.topic = topic

        def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
            if not rc.is_failure:
                c.subscribe(self.topic, qos=1)
                self.connected.set()

        def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))

        def on_disconnect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
            self.connected.clear()

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.on_disconnect = on_disconnect
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.connected.wait(10), "test subscriber could not connect"
        time.sleep(0.2)  # let the SUBACK land

    def decoded(self, kind: str | None = None) -> list[Message]:
        with self._lock:
            raw = list(self.messages)
        out = [decode_message(t, p) for t, p, _ in raw if p]
        return [m for m in out if kind is None or m.kind == kind]

    def counts(self) -> list[CountsMessage]:
        return [cast(CountsMessage, m) for m in self.decoded("counts")]

    def wait_counts(self, n: int, timeout: float) -> list[CountsMessage]:
        """Wait until `n` distinct (unit, lane, window_start) records have arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.counts()
            if len({m.key for m in got}) >= n:
                return got
            time.sleep(0.1)
        return self.counts()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class StoredAcker:
    """The server's half of the `stored` protocol, as a test double: it takes every unit message
    it receives as durable at once and publishes, retained, how far each unit's stream is
    contiguous (a seq below the unit's `outbox_first_seq` that never came counts as a gap).
    Tests of the real server's half live with the server; this one lets the edge's half be
    tested against a real broker. `stop()` takes it offline, as a server outage. With
    `only_on_change` it publishes only when a unit's `through_seq` moves (a server may)."""

    def __init__(
        self, port: int, client_id: str = "test-acker", interval_s: float = 0.2, *, only_on_change: bool = False
    ) -> None:
        self.port = port
        self.client_id = client_id
        self.interval_s = interval_s
        self.only_on_change = only_on_change
        self.seen: dict[tuple[str, str], set[int]] = {}
        self.through: dict[tuple[str, str], int] = {}
        self.first: dict[tuple[str, str], int] = {}
        self.gaps: dict[tuple[str, str], int] = {}
        self.published = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sub: Subscriber | None = None
        self.start()

    def start(self) -> None:
        self._stop.clear()
        self.sub = Subscriber(self.port, "gatewatch/v1/+/+/+", client_id=self.client_id)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def received(self, gate: str = GATE, unit: str = UNIT) -> set[int]:
        with self._lock:
            return set(self.seen.get((gate, unit), set()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.sub is not None:
            self.sub.close()

    def _loop(self) -> None:
        taken = 0
        while not self._stop.wait(self.interval_s):
            assert self.sub is not None
            with self.sub._lock:
                fresh = self.sub.messages[taken:]
                taken = len(self.sub.messages)
            changed: set[tuple[str, str]] = set()
            for topic, payload, _retained in fresh:
                if not payload or topic.endswith(("/stored", "/alert", "/status")):
                    continue
                try:
                    m = decode_message(topic, payload)
                except WireError:
                    continue  # a server dead-letters it; it is no part of any unit's stream
                if isinstance(m, AlertMessage | StoredMessage):
                    continue
                key = (m.gate, m.unit)
                with self._lock:
                    self.seen.setdefault(key, set()).add(m.seq)
                    if isinstance(m, HealthMessage) and m.outbox_first_seq is not None:
                        self.first[key] = max(self.first.get(key, 0), m.outbox_first_seq)
                changed.add(key)
            for key in changed:
                self._advance(key)

    def _advance(self, key: tuple[str, str]) -> None:
        with self._lock:
            seen = self.seen[key]
            before = through = self.through.get(key, 0)
            while through + 1 in seen or through + 1 < self.first.get(key, 0):
                if through + 1 not in seen:
                    self.gaps[key] = self.gaps.get(key, 0) + 1
                through += 1
            self.through[key] = through
            if self.only_on_change and through == before:
                return
            message = StoredMessage(gate=key[0], unit=key[1], through_seq=through, at=datetime.now(UTC),
                                    gaps=self.gaps.get(key, 0))
        assert self.sub is not None
        self.sub.client.publish(topic_for(message), encode(message), qos=1, retain=True)
        self.published += 1


def shipped_persistence() -> str:
    """The broker persistence settings of the shipped deploy/mosquitto/mosquitto.conf, for a test
    broker (they override the fixture's own `autosave_interval 1`: the last value wins)."""
    keys = ("persistence ", "autosave_interval", "autosave_on_changes", "max_queued_messages", "queue_qos0_messages")
    conf = (Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    return "".join(line + "\n" for line in conf.splitlines() if line.startswith(keys))
