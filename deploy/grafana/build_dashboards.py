#!/usr/bin/env python3
"""Write the gatewatch Grafana dashboards (dashboards/*.json) from the compact definitions here.

Dashboard JSON is long and repetitive; the queries are what matter and what the tests execute,
so they are written once, here, next to the measurement and field names of server/schema.py.
Run after editing, and commit both (tests/deploy/test_grafana.py checks they agree):

    python3 deploy/grafana/build_dashboards.py

Standard library only. Queries are InfluxQL (served by InfluxDB 1.x, 2.x through DBRP mapping,
and 3.x), using Grafana's `$timeFilter` and `$__interval` macros and the dashboard variables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DS = {"type": "influxdb", "uid": "gatewatch-influx"}
LANE = '"gate" =~ /^$gate$/ AND "lane" =~ /^$lane$/ AND $timeFilter'
UNIT = '"gate" =~ /^$gate$/ AND "unit" =~ /^$unit$/ AND $timeFilter'


def target(query: str, fmt: str = "time_series", ref: str = "A", alias: str | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": DS, "rawQuery": True, "query": query, "resultFormat": fmt}
    if alias:
        t["alias"] = alias
    return t


def panel(
    title: str, kind: str, targets: list[dict[str, Any]], unit: str = "short", w: int = 12, h: int = 8,
    description: str = "", options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "type": kind, "title": title, "description": description, "datasource": DS, "targets": targets,
        "gridPos": {"w": w, "h": h, "x": 0, "y": 0},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options or {},
    }


def variable(name: str, query: str, label: str, include_all: bool = False) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DS, "query": query,
        "definition": query, "refresh": 2, "sort": 1, "multi": False, "includeAll": include_all,
        "current": {}, "options": [],
    }


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two columns, in order; ids from 1."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"].update(x=x, y=y)
        x += w
        row_h = max(row_h, h)
    return panels


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]],
              annotations: list[dict[str, Any]] | None = None, time_from: str = "now-6h") -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "tags": ["gatewatch"], "timezone": "browser", "schemaVersion": 39,
        "version": 1, "editable": True, "refresh": "30s", "time": {"from": time_from, "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": annotations or []},
        "panels": layout(panels),
        "links": [{"type": "dashboards", "tags": ["gatewatch"], "title": "gatewatch", "asDropdown": True}],
    }


def gates_overview() -> dict[str, Any]:
    panels = [
        panel("Vehicles per interval by gate", "timeseries", [target(
            'SELECT sum("count") FROM "lane_counts" WHERE $timeFilter GROUP BY time($__interval), "gate" fill(0)',
            alias="$tag_gate")], description="Crossings of every lane, class and direction"),
        panel("Longest queue by gate", "timeseries", [target(
            'SELECT max("length_max") FROM "lane_queue" WHERE $timeFilter GROUP BY time($__interval), "gate"',
            alias="$tag_gate")], description="Most vehicles seen at once in any queue zone of the gate"),
        panel("Vehicles by class", "piechart", [target(
            'SELECT sum("count") FROM "lane_counts" WHERE $timeFilter GROUP BY "class"', alias="$tag_class")],
            w=6),
        panel("Trucks by gate and direction", "bargauge", [target(
            'SELECT sum("count") FROM "lane_counts" WHERE "class" = \'truck\' AND $timeFilter '
            'GROUP BY "gate", "direction"', alias="$tag_gate $tag_direction")], w=6),
        panel("Longest expected wait by lane", "bargauge", [target(
            'SELECT max("expected_wait_s") FROM "lane_queue" WHERE $timeFilter GROUP BY "gate", "lane"',
            alias="$tag_gate $tag_lane")], unit="s", w=12,
            description="Queue length / clearance rate: how long a truck joining now would wait"),
        panel("Alerts", "table", [target(
            'SELECT last("level") AS "level", last("active") AS "active", last("text") AS "text" FROM "alerts" '
            'WHERE $timeFilter GROUP BY "gate", "lane", "rule"', fmt="table")],
            description="Latest state of every alert rule that fired in the range (server alert engine)"),
        panel("Units online", "stat", [target(
            'SELECT last("online") FROM "unit_status" WHERE $timeFilter GROUP BY "gate", "unit"',
            alias="$tag_gate/$tag_unit")], description="From each unit's retained status and Last Will"),
        panel("Server ingest", "timeseries", [target(
            'SELECT mean("messages_per_s") AS "messages_per_s", max("spool_depth") AS "spool_depth", '
            'max("write_latency_ms_p95") AS "write_latency_ms_p95" FROM "server_health" WHERE $timeFilter '
            'GROUP BY time($__interval), "server"', alias="$tag_server $col")], w=24,
            description="Messages/s from the broker; spool depth > 0 means the database is not taking writes "
            "and the server is holding them on disk"),
    ]
    return dashboard("gatewatch-gates", "gatewatch: gates overview", panels, [])


def lane_detail() -> dict[str, Any]:
    panels = [
        panel("Crossings by class and direction", "timeseries", [target(
            f'SELECT sum("count") FROM "lane_counts" WHERE {LANE} GROUP BY time($__interval), "class", "direction" '
            'fill(0)', alias="$tag_class $tag_direction")], w=24),
        panel("Queue length", "timeseries", [target(
            'SELECT max("length_max") AS "max", mean("length_mean") AS "mean", max("stationary_max") AS "stationary" '
            f'FROM "lane_queue" WHERE {LANE} GROUP BY time($__interval)')]),
        panel("Waiting time", "timeseries", [target(
            'SELECT mean("wait_p50_s") AS "p50", max("wait_p90_s") AS "p90", max("wait_max_s") AS "max" '
            f'FROM "lane_queue" WHERE {LANE} GROUP BY time($__interval)')], unit="s",
            description="From entering the queue zone to crossing the line"),
        panel("Clearance and expected wait", "timeseries", [target(
            'SELECT mean("clearance_per_min") AS "clearance_per_min", max("expected_wait_s") AS "expected_wait_s" '
            f'FROM "lane_queue" WHERE {LANE} GROUP BY time($__interval)')]),
        panel("Camera uptime", "timeseries", [target(
            f'SELECT mean("camera_up") FROM "lane_queue" WHERE {LANE} GROUP BY time($__interval)')],
            unit="percentunit"),
        panel("Daily crossings (hourly rollups)", "barchart", [target(
            'SELECT sum("count") FROM "gatewatch"."hourly"."lane_counts" WHERE '
            f'{LANE} GROUP BY time(1d), "class"', alias="$tag_class")], w=24,
            description="From the hourly retention policy, kept for years (raw data is kept 90 days)"),
    ]
    variables = [
        variable("gate", 'SHOW TAG VALUES FROM "lane_counts" WITH KEY = "gate"', "Gate"),
        variable("lane", 'SHOW TAG VALUES FROM "lane_counts" WITH KEY = "lane" WHERE "gate" =~ /^$gate$/', "Lane"),
    ]
    annotations = [{
        "name": "Alerts", "enable": True, "iconColor": "orange", "datasource": DS,
        "query": f'SELECT "text" FROM "alerts" WHERE {LANE}', "textColumn": "text", "tagsColumn": "rule",
    }]
    return dashboard("gatewatch-lane", "gatewatch: lane detail", panels, variables, annotations)


def unit_health() -> dict[str, Any]:
    panels = [
        panel("Frames per second", "timeseries", [target(
            f'SELECT mean("fps") FROM "unit_health" WHERE {UNIT} GROUP BY time($__interval)')],
            description="Gate traffic needs at least 5-7"),
        panel("Inference time", "timeseries", [target(
            f'SELECT mean("inference_ms") FROM "unit_health" WHERE {UNIT} GROUP BY time($__interval)')], unit="ms"),
        panel("Outbox backlog", "timeseries", [target(
            'SELECT max("outbox_depth") AS "records", max("outbox_oldest_s") AS "oldest_s" '
            f'FROM "unit_health" WHERE {UNIT} GROUP BY time($__interval)')],
            description="Records waiting on the unit for the broker; grows while the link is down"),
        panel("CPU temperature", "timeseries", [target(
            f'SELECT max("cpu_temp_c") FROM "unit_health" WHERE {UNIT} GROUP BY time($__interval)')],
            unit="celsius"),
        panel("Memory", "timeseries", [target(
            f'SELECT max("mem_mb") FROM "unit_health" WHERE {UNIT} GROUP BY time($__interval)')], unit="decmbytes"),
        panel("Status changes", "table", [target(
            f'SELECT "state", "version", "config_hash" FROM "unit_status" WHERE {UNIT}', fmt="table")]),
    ]
    variables = [
        variable("gate", 'SHOW TAG VALUES FROM "unit_health" WITH KEY = "gate"', "Gate"),
        variable("unit", 'SHOW TAG VALUES FROM "unit_health" WITH KEY = "unit" WHERE "gate" =~ /^$gate$/', "Unit"),
    ]
    return dashboard("gatewatch-units", "gatewatch: unit health", panels, variables, time_from="now-24h")


def cross_gate() -> dict[str, Any]:
    """The province's view: every gate side by side over time, and which one to send a truck to now.
    From the server's per-gate summaries (server/summary.py): rank 0 means not ranked (no lane of the
    gate reported recently)."""
    by_gate = 'FROM "gate_summary_v1" WHERE $timeFilter GROUP BY time($__interval), "gate"'
    panels = [
        panel("Best gate now", "stat", [target(
            'SELECT last("best_gate") AS "best_gate", last("best_wait_s") AS "expected_wait_s" '
            'FROM "province_summary_v1" WHERE $timeFilter', fmt="table")], w=6,
            description="The gate where a truck arriving now waits least (province ranking)",
            options={"reduceOptions": {"fields": "/^best_gate$/", "calcs": ["lastNotNull"]}, "textMode": "value"}),
        panel("Gates ranked now", "table", [target(
            'SELECT last("rank") AS "rank", last("expected_wait_s") AS "expected_wait_s", '
            'last("trucks_cleared_per_h") AS "trucks_cleared_per_h", last("trucks_arriving_per_h") AS '
            '"trucks_arriving_per_h", last("vehicles_queued") AS "vehicles_queued", last("lanes_reporting") AS '
            '"lanes_reporting" FROM "gate_summary_v1" WHERE $timeFilter GROUP BY "gate"', fmt="table")], w=18,
            description="Each gate's latest summary; rank 1 is the shortest expected wait, 0 not ranked"),
        panel("Expected truck wait by gate", "timeseries", [target(
            f'SELECT last("expected_wait_s") {by_gate}', alias="$tag_gate")], unit="s", w=24,
            description="Vehicles queued / vehicles cleared per second: the wait of a truck joining now"),
        panel("Trucks arriving per hour by gate", "timeseries", [target(
            f'SELECT mean("trucks_arriving_per_h") {by_gate}', alias="$tag_gate")],
            description="Truck crossings in each gate's arriving directions"),
        panel("Trucks cleared per hour by gate", "timeseries", [target(
            f'SELECT mean("trucks_cleared_per_h") {by_gate}', alias="$tag_gate")],
            description="Truck crossings in each gate's cleared directions"),
        panel("Vehicles queued by gate", "timeseries", [target(
            f'SELECT mean("vehicles_queued") {by_gate}', alias="$tag_gate")],
            description="Vehicles in the queue zones of each gate's reporting lanes"),
        panel("Best gate over time", "state-timeline", [target(
            'SELECT "best_gate" FROM "province_summary_v1" WHERE $timeFilter', fmt="table")],
            description="Which gate ranked first at each summary"),
    ]
    return dashboard("gatewatch-cross-gate", "gatewatch: cross-gate view", panels, [])


DASHBOARDS = {"gates-overview.json": gates_overview, "lane-detail.json": lane_detail,
              "unit-health.json": unit_health, "cross-gate.json": cross_gate}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
