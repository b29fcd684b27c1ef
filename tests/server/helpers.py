"""Reusable pieces for server tests (and the end-to-end clip test): configs, traffic, MQTT peers,
the server in-process or as a subprocess, and read-back of what reached the database.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.mqtt import make_client
from gatewatch.services import Process, wait_for
from server.config import ServerConfig, parse_config
from wire.payloads import (
    CountsMessage,
    DeadLetter,
    QueueStats,
    VehicleClass,
    encode,
    topic_for,
)

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
GATE = "huu-nghi"
UNITS = ["u1", "u2", "u3"]
#: the lanes each test unit owns: a lane belongs to one unit of its gate
LANES = {"u1": ("l1", "l2"), "u2": ("l3", "l4"), "u3": ("l5", "l6")}
#: `validation.gates` declaring them, with the directions `counts_message` uses
DECLARED = {GATE: {u: {lane: ["in", "out"] for lane in lanes} for u, lanes in LANES.items()}}
#: windows a day ago, aligned to 10 s: well inside the clock-skew bound and every retention
BASE = datetime.fromtimestamp((time.time() // 10) * 10 - 86_400, UTC)


def config_dict(tmp: Path, mqtt_port: int, db_url: str, *, api: str = "v1", **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "server_id": "test-server",
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "client_id": f"gw-server-{os.getpid()}",
                 "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "keepalive_s": 5},
        "influx": {"api": api, "url": db_url, "database": "gatewatch", "bucket": "gatewatch", "timeout_s": 5,
                   "flush_interval_s": 0.1},
        "spool": {"path": str(tmp / "spool.sqlite3"), "retry_min_s": 0.2, "retry_max_s": 1.0},
        "validation": {"gates": {GATE: UNITS}},
        "health": {"interval_s": 1},
        "alerts": {"silence_wall_clock": False},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def server_config(tmp: Path, mqtt_port: int, db_url: str, **kw: Any) -> ServerConfig:
    return parse_config(config_dict(tmp, mqtt_port, db_url, **kw))


def write_config(tmp: Path, mqtt_port: int, db_url: str, **kw: Any) -> Path:
    path = tmp / "server.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp, mqtt_port, db_url, **kw)))
    return path


def counts_message(
    unit: str, lane: str, i: int, *, seq: int | None = None, window_s: float = 10.0, start: datetime = BASE,
    queue: float = 0, crossings: int | None = None, loop_count: int | None = None, camera_up: float = 1.0,
) -> CountsMessage:
    """Window i of a lane; counts vary with (unit, lane, i) so swapped or lost records show."""
    h = sum(map(ord, unit + lane))
    if crossings is None:
        counts = {VehicleClass.TRUCK: {"in": (i + h) % 7, "out": (i * 3 + h) % 5},
                  VehicleClass.CAR: {"in": (i * 5 + h) % 11}}
    else:
        counts = {VehicleClass.TRUCK: {"in": crossings}} if crossings else {}
    q = int(queue)
    return CountsMessage(
        gate=GATE, unit=unit, lane=lane, seq=i if seq is None else seq,
        window_start=start + timedelta(seconds=i * window_s), window_s=window_s, counts=counts,
        queue=QueueStats(length_max=q, length_mean=float(q), stationary_max=q,
                         clearance_per_min=(crossings * 60 / window_s) if crossings else None),
        frames=100, camera_up=camera_up, loop_count=loop_count,
    )


def expected_counts(messages: Iterable[CountsMessage]) -> Counter[tuple[str, str, str, str, int]]:
    """(unit, lane, class, direction, epoch ns) -> count, for comparing with what is stored."""
    out: Counter[tuple[str, str, str, str, int]] = Counter()
    for m in messages:
        ns = int(m.window_start.timestamp()) * 1_000_000_000
        for cls, dirs in m.counts.items():
            for d, n in dirs.items():
                if n:
                    out[(m.unit, m.lane, cls.value, d, ns)] = n
    return out


class Publisher:
    """Publishes QoS 1 like an edge unit and can wait until the broker has every message."""

    def __init__(self, port: int, client_id: str = "test-pub") -> None:
        self.client = make_client(client_id, max_inflight=1000)
        self._acked = 0
        self._sent = 0
        self._lock = threading.Lock()

        def on_publish(c: Any, u: Any, mid: int, rc: Any, p: Any) -> None:
            with self._lock:
                self._acked += 1

        self.client.on_publish = on_publish
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish failed: {info.rc}")
        self._sent += 1

    def send_message(self, message: Any, retain: bool = False) -> None:
        self.send(topic_for(message), encode(message), retain)

    def flush(self, timeout: float = 60) -> None:
        wait_for(lambda: self._acked >= self._sent, timeout, "PUBACKs from the broker", 0.02)

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(port: int, messages: Iterable[Any]) -> None:
    """Publish every message at QoS 1, as one edge unit would, and wait for every PUBACK."""
    pub = Publisher(port)
    for m in messages:
        pub.send_message(m)
    pub.close()


class Listener:
    """A QoS 1 subscriber with a persistent session, recording (topic, payload, retain)."""

    def __init__(self, port: int, topic: str, client_id: str = "test-listener") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.ready = threading.Event()
        self.client = make_client(client_id, reconnect_s=(0.2, 1))

        def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
            if not rc.is_failure:
                c.subscribe(topic, qos=1)

        def on_subscribe(c: Any, u: Any, mid: Any, rcs: Any, p: Any) -> None:
            self.ready.set()

        def on_message(c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
            with self._lock:
                self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: unannotated __init__
        props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", port, keepalive=10, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.ready.wait(10), "listener could not subscribe"

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def dead_letters(self) -> list[DeadLetter]:
        return [DeadLetter.model_validate_json(p) for _, p, _ in self.snapshot()]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ServerProcess:
    """`python -m gatewatch server --config ...` as a real process, killable like production."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.env = env or {}
        self.process = Process([PYTHON, "-m", "gatewatch", "server", "--config", str(config)], log, cwd=ROOT,
                               name="gatewatch server")

    def start(self) -> None:
        """Start with the environment as it is now (a test may set a secret just for the start)."""
        self.process.env = {**os.environ, "PYTHONPATH": str(ROOT), **self.env}
        self.process.start()

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> int:
        """SIGTERM, then its exit code (a server still running after 30 s is SIGKILLed: not 0)."""
        code = self.process.stop(timeout_s=30)
        assert code is not None, "the server was never started"
        return code

    def alive(self) -> bool:
        return self.process.running

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def influx_counts(db: Any) -> Counter[tuple[str, str, str, str, int]]:
    """Every stored lane_counts point with a count via InfluxQL, keyed like `expected_counts` (the
    zeros the server writes for a lane's other classes and directions are left out)."""
    out: Counter[tuple[str, str, str, str, int]] = Counter()
    rows = db.rows('SELECT "count" FROM lane_counts GROUP BY "unit", "lane", "class", "direction"')
    for r in rows:
        key = (r["unit"], r["lane"], r["class"], r["direction"], int(r["time"]))
        assert key not in out, f"two points for {key}"
        if int(r["count"]):
            out[key] = int(r["count"])
    return out


def victoria_counts(vm: Any) -> Counter[tuple[str, str, str, str, int]]:
    out: Counter[tuple[str, str, str, str, int]] = Counter()
    for series in vm.export('{__name__="lane_counts_count"}'):
        m = series["metric"]
        for v, ts in zip(series["values"], series["timestamps"], strict=True):
            key = (m["unit"], m["lane"], m["class"], m["direction"], int(ts) * 1_000_000)
            assert key not in out, f"two samples for {key}"
            if int(v):
                out[key] = int(v)
    return out


def wait_server_subscribed(port: int, timeout: float = 30) -> None:
    """Block until a server has published health while connected: its subscription exists by then."""
    from wire.topics import SERVER_HEALTH

    watch = Listener(port, SERVER_HEALTH, f"health-watch-{time.monotonic_ns()}")
    try:
        wait_for(lambda: any(b'"mqtt_connected":true' in p for _, p, _ in watch.snapshot()), timeout,
                   "the server to connect and subscribe")
    finally:
        watch.close()


@contextmanager
def server_process(tmp: Path, mqtt_port: int, db_url: str, **over: Any) -> Iterator[ServerProcess]:
    """`gatewatch server` as a subprocess against the given broker and database, subscribed on entry.

    On exit it is stopped with SIGTERM and must exit 0 without a traceback. For end-to-end tests
    (e.g. a real clip through the edge pipeline): publish, then read back with `influx_counts`.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    proc = ServerProcess(write_config(tmp, mqtt_port, db_url, **over), tmp / "server.log")
    proc.start()
    try:
        wait_server_subscribed(mqtt_port)
        yield proc
    finally:
        code = proc.stop() if proc.alive() else None
    assert code in (0, None), proc.output()[-2000:]
    assert "Traceback" not in proc.output(), proc.output()[-2000:]
