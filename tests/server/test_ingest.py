"""Stored counts equal what was sent, through real mosquitto into real influxd 1.6 and victoria-metrics."""

from __future__ import annotations

from pathlib import Path

from server.app import running
from server.health import ServerHealthMessage
from tests.server.helpers import (
    Listener,
    Publisher,
    counts_message,
    expected_counts,
    influx_counts,
    server_config,
    victoria_counts,
    wait_until,
)
from wire.topics import SERVER_HEALTH


def _health_rows(db) -> list:
    try:
        return db.rows("SELECT * FROM server_health")
    except RuntimeError:
        return []


def _traffic(n: int) -> list:
    return [counts_message(u, lane, i, seq=i * 2 + k) for i in range(n) for u in ("u1", "u2")
            for k, lane in enumerate(("l1", "l2"))]


def test_counts_stored_exactly_influx_v1(tmp_path: Path, mosquitto, influxd) -> None:
    messages = _traffic(50)
    want = expected_counts(messages)
    assert sum(want.values()) > 0
    cfg = server_config(tmp_path, mosquitto.port, influxd.url)
    with running(cfg) as server:
        assert server.subscriber.connected.wait(10)
        pub = Publisher(mosquitto.port)
        for m in messages:
            pub.send_message(m)
        pub.close()
        wait_until(lambda: server.health.stored >= len(messages), 30, "all messages stored")
        # server health: on MQTT (retained) and in InfluxDB
        wait_until(lambda: any(r["stored"] >= len(messages) for r in _health_rows(influxd)), 10, "server health")
    got = influx_counts(influxd)
    assert got == want
    health = Listener(mosquitto.port, SERVER_HEALTH, "health-reader")
    wait_until(lambda: bool(health.snapshot()), 10, "retained server health")
    snap = ServerHealthMessage.model_validate_json(health.snapshot()[-1][1])
    health.close()
    assert snap.rejected == 0 and snap.spool_depth == 0
    assert set(snap.units_last_seen_s) == {"huu-nghi/u1", "huu-nghi/u2"}
    queue_rows = influxd.rows('SELECT count("frames") FROM lane_queue')
    assert queue_rows[0]["count"] == len(messages)


def test_counts_stored_exactly_v2_victoria(tmp_path: Path, mosquitto, victoria) -> None:
    messages = _traffic(30)
    want = expected_counts(messages)
    cfg = server_config(tmp_path, mosquitto.port, victoria.url, api="v2")
    with running(cfg) as server:
        assert server.subscriber.connected.wait(10)
        pub = Publisher(mosquitto.port)
        for m in messages:
            pub.send_message(m)
        pub.close()
        wait_until(lambda: server.health.stored >= len(messages), 30, "all messages stored")
    wait_until(lambda: victoria_counts(victoria) == want, 10, "victoria-metrics to hold every count")
