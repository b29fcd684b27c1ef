"""Stored counts equal what was sent, through real mosquitto into real influxd 1.6 and victoria-metrics."""

from __future__ import annotations

from pathlib import Path

from server.app import running
from tests.server.helpers import (
    Publisher,
    counts_message,
    expected_counts,
    influx_counts,
    server_config,
    victoria_counts,
    wait_until,
)


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
    got = influx_counts(influxd)
    assert got == want
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
