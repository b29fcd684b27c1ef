"""deploy/grafana: every dashboard and alert query runs on a real influxd holding data the server
wrote, and returns the numbers computed here from the same messages.

Grafana itself is not started (not packaged for Debian); its part is macro interpolation, done
here as Grafana does it for InfluxQL: `$timeFilter` -> `time >= Xms and time <= Yms`,
`$__interval`, and `$var` inside `/^$var$/`.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
import yaml

import server.schema as schema
from tests.deploy.conftest import GateDb
from tests.deploy.dataset import Dataset
from wire.payloads import VehicleClass

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
VARS = {"gate": "huu-nghi", "lane": "lane1", "unit": "cam1"}
INTERVAL = "1h"
Key = tuple[Any, ...]


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def load_yaml(rel: str) -> Any:
    return yaml.safe_load((GRAFANA / "provisioning" / rel).read_text())


def interpolate(query: str, start: datetime, end: datetime) -> str:
    q = query.replace("$timeFilter", f"time >= {int(start.timestamp() * 1000)}ms and time <= "
                                     f"{int(end.timestamp() * 1000)}ms")
    q = q.replace("$__interval", INTERVAL)
    for name, value in VARS.items():
        q = q.replace(f"${name}", value)
    assert not re.search(r"\$[A-Za-z_]", q), f"uninterpolated macro in {q}"
    return q


def norm(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    return round(float(v), 6)


def ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def hour(t: datetime) -> int:
    return ns(t.replace(minute=0, second=0, microsecond=0))


def day(t: datetime) -> int:
    return ns(t.replace(hour=0, minute=0, second=0, microsecond=0))


def agg(items: Iterable[tuple[Key, Any]], how: Callable[[list[Any]], Any]) -> dict[Key, Any]:
    groups: dict[Key, list[Any]] = defaultdict(list)
    for key, value in items:
        groups[key].append(value)
    return {k: how([v for v in vs if v is not None]) if any(v is not None for v in vs) else None
            for k, vs in groups.items()}


def hours(ds: Dataset) -> list[int]:
    return [ns(ds.start + timedelta(hours=h)) for h in range(2)]


def columns(*per_column: dict[Key, Any]) -> dict[Key, tuple[Any, ...]]:
    """{key: a}, {key: b} -> {key: (a, b)}, normalised; keys missing from a column are None."""
    keys = set().union(*per_column)
    return {k: tuple(norm(c.get(k)) for c in per_column) for k in keys}


# -- what each panel should show, from the dataset ---------------------------------------------


def crossings(ds: Dataset) -> list[dict[str, Any]]:
    """Every lane_counts point the server writes: each class for each direction of the lane, zero or not."""
    out = []
    for m in ds.counts:
        directions = sorted({d for dirs in m.counts.values() for d in dirs})
        out += [{"t": m.window_start, "gate": m.gate, "unit": m.unit, "lane": m.lane, "class": c.value,
                 "direction": d, "n": m.counts.get(c, {}).get(d, 0)} for c in VehicleClass for d in directions]
    return out


def lane_windows(ds: Dataset) -> list[Any]:
    return [m for m in ds.counts if (m.gate, m.lane) == (VARS["gate"], VARS["lane"])]


def unit_reports(ds: Dataset) -> list[Any]:
    return [h for h in ds.health if (h.gate, h.unit) == (VARS["gate"], VARS["unit"])]


def per_hour(items: list[Any], at: Callable[[Any], datetime], **fields: tuple[Callable[[Any], Any], Callable[..., Any]]
             ) -> dict[Key, tuple[Any, ...]]:
    per_column = []
    for get, how in fields.values():
        per_column.append(agg((((hour(at(x)),), get(x)) for x in items), how))
    return columns(*per_column)


def expected_panels(ds: Dataset) -> dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[Key, tuple[Any, ...]]]]:
    """title -> (key columns, value columns, {key: values})."""
    c = crossings(ds)
    lane = lane_windows(ds)
    rep = unit_reports(ds)
    # lane detail crossings: fill(0) puts a 0 in every hour for every (class, direction) of the lane
    lane_c = [x for x in c if (x["gate"], x["lane"]) == (VARS["gate"], VARS["lane"])]
    filled = {(h, x["class"], x["direction"]): 0 for x in lane_c for h in hours(ds)}
    filled.update(agg((((hour(x["t"]), x["class"], x["direction"]), x["n"]) for x in lane_c), sum))
    last_alert = {}
    for a in sorted(ds.alerts, key=lambda a: a.at):
        last_alert[(a.gate, a.lane, a.rule)] = (a.level.value, a.active, a.text)
    last_status = {}
    for s in sorted(ds.status, key=lambda s: s.at):
        last_status[(s.gate, s.unit)] = (s.state.value == "online",)
    return {
        "Vehicles per interval by gate": (("time", "gate"), ("sum",), columns(
            agg((((hour(x["t"]), x["gate"]), x["n"]) for x in c), sum))),
        "Longest queue by gate": (("time", "gate"), ("max",), columns(
            agg((((hour(m.window_start), m.gate), m.queue.length_max) for m in ds.counts), max))),
        "Vehicles by class": (("class",), ("sum",), columns(agg((((x["class"],), x["n"]) for x in c), sum))),
        "Trucks by gate and direction": (("gate", "direction"), ("sum",), columns(
            agg((((x["gate"], x["direction"]), x["n"]) for x in c if x["class"] == "truck"), sum))),
        "Longest expected wait by lane": (("gate", "lane"), ("max",), columns(
            agg((((m.gate, m.lane), m.queue.expected_wait_s) for m in ds.counts), max))),
        "Alerts": (("gate", "lane", "rule"), ("level", "active", "text"),
                   {k: tuple(norm(v) for v in vs) for k, vs in last_alert.items()}),
        "Units online": (("gate", "unit"), ("last",), last_status),
        "Server ingest": (("time", "server"), ("messages_per_s", "spool_depth", "write_latency_ms_p95"), columns(
            agg((((hour(h.at), h.server), h.messages_per_s) for h in ds.server), mean),
            agg((((hour(h.at), h.server), h.spool_depth) for h in ds.server), max),
            agg((((hour(h.at), h.server), h.write_latency_ms_p95) for h in ds.server), max))),
        "Crossings by class and direction": (("time", "class", "direction"), ("sum",), columns(filled)),
        "Queue length": (("time",), ("max", "mean", "stationary"), per_hour(
            lane, lambda m: m.window_start, a=(lambda m: m.queue.length_max, max),
            b=(lambda m: m.queue.length_mean, mean), c=(lambda m: m.queue.stationary_max, max))),
        "Waiting time": (("time",), ("p50", "p90", "max"), per_hour(
            lane, lambda m: m.window_start, a=(lambda m: m.queue.wait_p50_s, mean),
            b=(lambda m: m.queue.wait_p90_s, max), c=(lambda m: m.queue.wait_max_s, max))),
        "Clearance and expected wait": (("time",), ("clearance_per_min", "expected_wait_s"), per_hour(
            lane, lambda m: m.window_start, a=(lambda m: m.queue.clearance_per_min, mean),
            b=(lambda m: m.queue.expected_wait_s, max))),
        "Camera uptime": (("time",), ("mean",), per_hour(lane, lambda m: m.window_start,
                                                          a=(lambda m: m.camera_up, mean))),
        "Daily crossings (hourly rollups)": (("time", "class"), ("sum",), columns(
            agg((((day(x["t"]), x["class"]), x["n"]) for x in lane_c), sum))),
        "Frames per second": (("time",), ("mean",), per_hour(rep, lambda h: h.at, a=(lambda h: h.fps, mean))),
        "Inference time": (("time",), ("mean",), per_hour(rep, lambda h: h.at, a=(lambda h: h.inference_ms, mean))),
        "Outbox backlog": (("time",), ("records", "oldest_s"), per_hour(
            rep, lambda h: h.at, a=(lambda h: h.outbox_depth, max), b=(lambda h: h.outbox_oldest_s, max))),
        "CPU temperature": (("time",), ("max",), per_hour(rep, lambda h: h.at, a=(lambda h: h.cpu_temp_c, max))),
        "Memory": (("time",), ("max",), per_hour(rep, lambda h: h.at, a=(lambda h: h.mem_mb, max))),
        "Status changes": (("time",), ("state", "version", "config_hash"), {
            (ns(s.at),): (s.state.value, s.version, s.config_hash)
            for s in ds.status if (s.gate, s.unit) == (VARS["gate"], VARS["unit"])}),
    }


def actual(db: Any, query: str, keys: tuple[str, ...], values: tuple[str, ...]) -> dict[Key, tuple[Any, ...]]:
    rows = db.rows(query)
    out = {tuple(r[k] for k in keys): tuple(norm(r[v]) for v in values) for r in rows}
    assert len(out) == len(rows), f"duplicate keys {keys} in {rows[:3]}"
    return out


# -- tests ----------------------------------------------------------------------------------------


#: dashboards with their own dataset and test (the cross-gate view: tests/deploy/test_cross_gate.py)
OWN_TESTS = {"cross-gate.json"}


def panels(every: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Panels of the dashboards this dataset checks (every dashboard's with `every`)."""
    return [(name, p) for name, d in load_dashboards().items() if every or name not in OWN_TESTS
            for p in d["panels"]]


def test_every_panel_has_an_expectation() -> None:
    """A new panel without numbers to check fails here, not silently."""
    from tests.deploy.dataset import make_dataset

    titles = [p["title"] for _, p in panels()]
    assert len(titles) == len(set(titles))
    assert set(titles) == set(expected_panels(make_dataset()))


@pytest.mark.parametrize("title", [p["title"] for _, p in panels()])
def test_panel_query_returns_expected_numbers(gate_db: GateDb, title: str) -> None:
    ds = gate_db.data
    (panel,) = [p for _, p in panels() if p["title"] == title]
    keys, values, want = expected_panels(ds)[title]
    (tgt,) = panel["targets"]
    got = actual(gate_db.db, interpolate(tgt["query"], ds.start, ds.end - timedelta(seconds=1)), keys, values)
    assert want, title
    assert got == want


def test_variables_list_the_real_tag_values(gate_db: GateDb) -> None:
    ds = gate_db.data
    want = {
        "gate": {m.gate for m in ds.counts},
        "lane": {m.lane for m in ds.counts if m.gate == VARS["gate"]},
        "unit": {h.unit for h in ds.health if h.gate == VARS["gate"]},
    }
    seen = 0
    for d in load_dashboards().values():
        for var in d["templating"]["list"]:
            rows = gate_db.db.rows(interpolate(var["query"], ds.start, ds.end))
            assert {r["value"] for r in rows} == want[var["name"]], var["query"]
            seen += 1
    assert seen == 4


def test_alert_annotations_show_the_lanes_alerts(gate_db: GateDb) -> None:
    ds = gate_db.data
    (ann,) = load_dashboards()["lane-detail.json"]["annotations"]["list"]
    got = actual(gate_db.db, interpolate(ann["query"], ds.start, ds.end), ("time",), ("text",))
    want = {(ns(a.at),): (a.text,) for a in ds.alerts if (a.gate, a.lane) == (VARS["gate"], VARS["lane"])}
    assert got == want and len(want) == 2


def firing_expected(uid: str, ds: Dataset, now: datetime) -> set[Key]:
    """Which series each rule should fire for, worked out from the dataset directly."""
    if uid == "gatewatch-unit-silent":
        bucket = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
        units = {(h.gate, h.unit) for h in ds.health}
        recent = {(h.gate, h.unit) for h in ds.health if bucket <= h.at <= now}
        return units - recent
    if uid == "gatewatch-lane-wait":
        win = [m for m in ds.counts if now - timedelta(seconds=900) <= m.window_start <= now]
        worst = agg((((m.gate, m.lane), m.queue.expected_wait_s) for m in win), max)
        return {k for k, v in worst.items() if v is not None and v > 3600}
    if uid == "gatewatch-server-red":
        last = {}
        for a in sorted(ds.alerts, key=lambda a: a.at):
            last[(a.gate, a.lane, a.rule)] = a.level.rank
        return {k for k, rank in last.items() if rank > 2.5}
    if uid == "gatewatch-outbox-backlog":
        reports = [h for h in ds.health if now - timedelta(seconds=600) <= h.at <= now]
        oldest = agg((((h.gate, h.unit), h.outbox_oldest_s) for h in reports), max)
        return {k for k, v in oldest.items() if v is not None and v > 600}
    if uid == "gatewatch-unit-seq":
        hour_ago = now - timedelta(hours=1)
        totals = [((g, u), gaps + resets) for g, u, at, gaps, resets in ds.seq if hour_ago <= at <= now]
        lo, hi = agg(totals, min), agg(totals, max)
        return {k for k in hi if hi[k] - lo[k] > 0}
    if uid == "gatewatch-server-silent":
        bucket = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
        return {(h.server,) for h in ds.server} - {(h.server,) for h in ds.server if bucket <= h.at <= now}
    raise AssertionError(f"no expectation for rule {uid}")


def test_alert_rules_fire_for_the_right_series(gate_db: GateDb) -> None:
    """Each rule's query, reduced to the last value per series and compared with its threshold as
    Grafana's reduce and threshold expressions do, fires exactly where the dataset says."""
    ds = gate_db.data
    now = ds.end - timedelta(seconds=30)
    ops: dict[str, Callable[[float, float], bool]] = {"gt": lambda v, p: v > p, "lt": lambda v, p: v < p}
    rules = load_yaml("alerting/gatewatch-rules.yaml")["groups"][0]["rules"]
    assert len(rules) == 6
    for rule in rules:
        data = {d["refId"]: d for d in rule["data"]}
        a, b, c = data["A"], data["B"]["model"], data["C"]["model"]
        assert (b["type"], b["reducer"], b["expression"], c["type"], c["expression"]) == (
            "reduce", "last", "A", "threshold", "B") and rule["condition"] == "C"
        (cond,) = c["conditions"]
        op, (param,) = ops[cond["evaluator"]["type"]], cond["evaluator"]["params"]
        start = now - timedelta(seconds=a["relativeTimeRange"]["from"])
        series = gate_db.db.query(interpolate(a["model"]["query"], start, now))
        tags = re.findall(r'GROUP BY (?:time\([^)]*\), )?(.*?)(?: fill\(\w+\))?$', a["model"]["query"])[0]
        names = [t.strip().strip('"') for t in tags.split(",")]
        firing = set()
        for s in series:
            last = s["values"][-1][1]
            if last is not None and op(last, param):
                firing.add(tuple(s["tags"][n] for n in names))
        want = firing_expected(rule["uid"], ds, now)
        assert want, f"{rule['uid']}: the dataset should make it fire somewhere"
        assert firing == want, rule["uid"]


def test_provisioning_files_parse_and_agree() -> None:
    ds_yaml = load_yaml("datasources/gatewatch.yaml")
    (source,) = ds_yaml["datasources"]
    uid = source["uid"]
    assert source["type"] == "influxdb" and source["jsonData"]["version"] == "InfluxQL"
    for value in (source["url"], source["user"], source["jsonData"]["dbName"], source["secureJsonData"]["password"]):
        assert re.fullmatch(r"\$\{GATEWATCH_[A-Z_]+\}", value), value  # from the environment, never literal
    providers = load_yaml("dashboards/gatewatch.yaml")["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/gatewatch"
    uids = set()
    for d in load_dashboards().values():
        uids.add(d["uid"])
        for p in d["panels"]:
            assert p["datasource"]["uid"] == uid and all(t["datasource"]["uid"] == uid for t in p["targets"])
        for v in d["templating"]["list"]:
            assert v["datasource"]["uid"] == uid
    assert len(uids) == 4
    for rule in load_yaml("alerting/gatewatch-rules.yaml")["groups"][0]["rules"]:
        assert {d["datasourceUid"] for d in rule["data"]} == {uid, "__expr__"}


def test_queries_name_only_schema_measurements() -> None:
    known = {schema.LANE_COUNTS, schema.LANE_QUEUE, schema.UNIT_HEALTH, schema.UNIT_STATUS, schema.ALERTS,
             schema.SERVER_HEALTH, schema.UNIT_SEQ, schema.GATE_SUMMARY, schema.PROVINCE_SUMMARY}
    queries = [t["query"] for _, p in panels(every=True) for t in p["targets"]]
    rules = load_yaml("alerting/gatewatch-rules.yaml")["groups"][0]["rules"]
    queries += [r["data"][0]["model"]["query"] for r in rules]
    used = {m for q in queries for m in re.findall(r'FROM (?:"gatewatch"\."hourly"\.)?"(\w+)"', q)}
    assert used and used <= known, used - known


def test_committed_json_is_what_the_builder_writes() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered: dict[str, str] = module.render()
    assert rendered == {name: (GRAFANA / "dashboards" / name).read_text() for name in rendered}
    assert set(rendered) == set(load_dashboards())


def test_dataset_is_recent_enough_for_the_raw_policy() -> None:
    from tests.deploy.dataset import make_dataset

    assert datetime.now(UTC) - make_dataset().start < timedelta(days=1)
