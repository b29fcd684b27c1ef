"""deploy/influxdb: retention policies and continuous queries on a real influxd 1.6."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from tests.deploy.conftest import GateDb, apply_iql
from tests.fixtures.influx import Influx1
from wire.payloads import VehicleClass

CQS = {"cq_lane_counts_1h": "lane_counts", "cq_lane_queue_1h": "lane_queue",
       "cq_unit_health_1h": "unit_health", "cq_alerts_1h": "alerts"}


def test_setup_applies_twice_with_the_same_result(influxd: Influx1) -> None:
    for _ in range(2):
        proc = apply_iql(influxd.url)
        assert proc.returncode == 0, proc.stderr
        rps = {r["name"]: r for r in influxd.rows('SHOW RETENTION POLICIES ON "gatewatch"')}
        assert (rps["raw"]["duration"], rps["raw"]["default"]) == ("2160h0m0s", True)  # 90 days
        assert (rps["hourly"]["duration"], rps["hourly"]["default"]) == ("0s", False)  # kept indefinitely
        cqs = {r["name"]: r["query"] for r in influxd.rows("SHOW CONTINUOUS QUERIES")}
        assert set(cqs) == set(CQS)
        for name, measurement in CQS.items():
            assert f"INTO gatewatch.hourly.{measurement} FROM gatewatch.raw.{measurement}" in cqs[name]
            assert "GROUP BY time(1h), *" in cqs[name] and "RESAMPLE EVERY 1h FOR 6h" in cqs[name]


def test_setup_restores_a_changed_retention(influxd: Influx1) -> None:
    """Someone shortened `raw` by hand: applying again puts 90 days back."""
    assert apply_iql(influxd.url).returncode == 0
    influxd.query('ALTER RETENTION POLICY "raw" ON "gatewatch" DURATION 1d')
    assert apply_iql(influxd.url).returncode == 0
    rps = {r["name"]: r for r in influxd.rows('SHOW RETENTION POLICIES ON "gatewatch"')}
    assert rps["raw"]["duration"] == "2160h0m0s"


def test_unreachable_database_is_one_line() -> None:
    proc = apply_iql("http://127.0.0.1:9")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot reach InfluxDB") and len(proc.stderr.strip().splitlines()) == 1


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def test_server_writes_go_to_raw_and_roll_up_hourly(gate_db: GateDb) -> None:
    db, data = gate_db.db, gate_db.data
    # the server writes without naming a policy: the default, raw, gets it
    raw = db.rows('SELECT sum("count") FROM "gatewatch"."raw"."lane_counts" GROUP BY "gate"')
    want_gate: dict[str, int] = defaultdict(int)
    for m in data.counts:
        want_gate[m.gate] += m.total()
    assert {r["gate"]: r["sum"] for r in raw} == want_gate
    assert db.rows('SELECT count(*) FROM "gatewatch"."autogen"."lane_counts"') == []

    hourly = db.rows('SELECT "count" FROM "gatewatch"."hourly"."lane_counts" GROUP BY *')
    want: dict[tuple[int, str, str, str, str, str], int] = defaultdict(int)
    for m in data.counts:  # the server writes every class for each direction of the lane, zeros too
        directions = {d for dirs in m.counts.values() for d in dirs}
        for cls in VehicleClass:
            for direction in directions:
                n = m.counts.get(cls, {}).get(direction, 0)
                want[(_ns(_hour(m.window_start)), m.gate, m.lane, m.unit, cls.value, direction)] += n
    got = {(r["time"], r["gate"], r["lane"], r["unit"], r["class"], r["direction"]): r["count"] for r in hourly}
    assert got == want

    queue = db.rows('SELECT "length_max", "waits_n", "window_s" FROM "gatewatch"."hourly"."lane_queue" GROUP BY *')
    want_q: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for m in data.counts:
        key = (_ns(_hour(m.window_start)), m.gate, m.lane)
        want_q[key][0] = max(want_q[key][0], m.queue.length_max)
        want_q[key][1] += m.queue.waits_n
        want_q[key][2] += int(m.window_s)
    assert {(r["time"], r["gate"], r["lane"]): [r["length_max"], r["waits_n"], r["window_s"]] for r in queue} == want_q
    assert all(v[2] == 3600 for v in want_q.values())  # whole hours: the dataset is aligned

    health = db.rows('SELECT "reports" FROM "gatewatch"."hourly"."unit_health" GROUP BY *')
    want_h: dict[tuple[int, str], int] = defaultdict(int)
    for h in data.health:
        want_h[(_ns(_hour(h.at)), h.unit + "@" + h.gate)] += 1
    assert {(r["time"], r["unit"] + "@" + r["gate"]): r["reports"] for r in health} == want_h
    assert data.end - data.start == timedelta(hours=2) and len({k[0] for k in want_h}) == 2
