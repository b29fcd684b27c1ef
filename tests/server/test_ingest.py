"""Stored counts equal what was sent, through real mosquitto into real influxd 1.6 and victoria-metrics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from server.app import running
from server.health import ServerHealthMessage
from tests.fixtures.influx import Influx1, QueryError
from tests.fixtures.procs import wait_for
from tests.server.helpers import (
    BASE,
    DECLARED,
    GATE,
    LANES,
    Listener,
    counts_message,
    expected_counts,
    influx_counts,
    publish_all,
    server_config,
    victoria_counts,
)
from wire.payloads import (
    AlertMessage,
    CameraState,
    CountsMessage,
    CrossingEvent,
    EventMessage,
    HealthMessage,
    StatusMessage,
    UnitState,
    VehicleClass,
)
from wire.topics import SERVER_HEALTH


def _health_rows(db: Influx1) -> list[dict[str, Any]]:
    try:
        return db.rows("SELECT * FROM server_health")
    except QueryError:
        return []


def _traffic(n: int) -> list[CountsMessage]:
    return [counts_message(u, lane, i, seq=i * 2 + k) for i in range(n) for u in ("u1", "u2")
            for k, lane in enumerate(LANES[u])]


def test_counts_stored_exactly_influx_v1(tmp_path: Path, mosquitto, influxd) -> None:
    messages = _traffic(50)
    want = expected_counts(messages)
    assert sum(want.values()) > 0
    cfg = server_config(tmp_path, mosquitto.port, influxd.url)
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        publish_all(mosquitto.port, messages)
        wait_for(lambda: server.health.stored >= len(messages), 30, "all messages stored")
        # server health: on MQTT (retained) and in InfluxDB
        wait_for(lambda: any(r["stored"] >= len(messages) for r in _health_rows(influxd)), 10, "server health")
    got = influx_counts(influxd)
    assert got == want
    health = Listener(mosquitto.port, SERVER_HEALTH, "health-reader")
    wait_for(lambda: bool(health.snapshot()), 10, "retained server health")
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
        assert server.subscriber.subscribed.wait(10)
        publish_all(mosquitto.port, messages)
        wait_for(lambda: server.health.stored >= len(messages), 30, "all messages stored")
    wait_for(lambda: victoria_counts(victoria) == want, 10, "victoria-metrics to hold every count")


def test_status_health_and_events_are_stored_and_drive_unit_alerts(tmp_path: Path, mosquitto, influxd) -> None:
    at = BASE + timedelta(seconds=15)
    messages = [
        counts_message("u1", "l1", 0, seq=0),
        StatusMessage(gate=GATE, unit="u1", seq=1, state=UnitState.ONLINE, at=at, version="0.1.0", config_hash="abc"),
        HealthMessage(gate=GATE, unit="u1", seq=2, at=at, interval_s=10, fps=7.5, inference_ms=90,
                      camera=CameraState.DOWN, outbox_depth=3, mem_mb=300, uptime_s=60),
        EventMessage(gate=GATE, unit="u1", seq=3, event=CrossingEvent(
            lane="l1", at=at, vehicle_class=VehicleClass.TRUCK, direction="in", track_id=4711, wait_s=95.0)),
        StatusMessage(gate=GATE, unit="u1", seq=4, state=UnitState.OFFLINE, at=at + timedelta(seconds=5),
                      version="0.1.0", config_hash="abc"),
    ]
    cfg = server_config(tmp_path, mosquitto.port, influxd.url)
    alerts = Listener(mosquitto.port, f"gatewatch/v1/{GATE}/l1/alert", "alert-watch")
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        publish_all(mosquitto.port, messages)
        wait_for(lambda: server.health.stored >= len(messages), 30, "all messages stored")
    status = influxd.rows("SELECT * FROM unit_status")
    assert [(r["state"], r["online"], r["unit"]) for r in status] == [("online", True, "u1"), ("offline", False, "u1")]
    health = influxd.rows("SELECT * FROM unit_health")
    assert len(health) == 1 and health[0]["camera"] == "down" and health[0]["fps"] == 7.5
    events = influxd.rows("SELECT * FROM lane_events")
    assert len(events) == 1 and events[0]["track_id"] == 4711 and events[0]["class"] == "truck"
    # track id is a field, never a tag
    tag_keys = {v[0] for s in influxd.query("SHOW TAG KEYS FROM lane_events") for v in s["values"]}
    assert tag_keys == {"gate", "unit", "lane", "class", "direction"}
    last = AlertMessage.model_validate_json(alerts.snapshot()[-1][1])
    alerts.close()
    assert {a.rule for a in last.active} == {"camera_down", "unit_offline"}
    rules = {(r["rule"], r["active"]) for r in influxd.rows("SELECT * FROM alerts")}
    assert rules == {("camera_down", True), ("unit_offline", True)}


def test_a_second_record_with_one_key_replaces_the_first_and_is_counted(tmp_path: Path, mosquitto, influxd) -> None:
    """A unit restarted inside a window sends that window again with new counts and a new seq: the
    second record replaces the first one's every count (no mix of both), and the clash shows in health."""
    first = counts_message("u1", "l1", 0, seq=1)
    again = CountsMessage(**{**first.model_dump(), "seq": 7, "counts": {VehicleClass.TRUCK: {"out": 2}}})
    cfg = server_config(tmp_path, mosquitto.port, influxd.url, validation={"gates": DECLARED})
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        publish_all(mosquitto.port, [first, first, again])  # a re-delivery is not a clash
        wait_for(lambda: server.health.stored >= 3, 30, "all messages stored")
        clashes = dict(server.health.clashes)
    rows = influxd.rows('SELECT "count" FROM lane_counts GROUP BY "class", "direction"')
    assert len(rows) == 8  # every class x both directions of the lane, one point each
    assert {(r["class"], r["direction"]): r["count"] for r in rows if r["count"]} == {("truck", "out"): 2}
    queue = influxd.rows('SELECT "total", "seq" FROM lane_queue')
    assert [(q["total"], q["seq"]) for q in queue] == [(2, 7)]  # total agrees with the counts beside it
    assert clashes == {f"{GATE}/u1": 1}
