"""The InfluxDB schema: which measurement, tags and fields each message becomes.

Timestamps are the record's own (window start, or the unit's stamp), never arrival time, so a
re-delivered message lands on the same (measurement, tags, time) point and overwrites it: the
at-least-once transport plus this rule gives exactly-once data. Tags only ever carry ids from a
small fixed set (gate, unit, lane, class, direction, rule); track ids and text are fields.

Line protocol comes from influxdb-client's `Point`, which owns escaping; both sinks write its
output, and the spool stores it verbatim. Window records are the hot path (thousands a second):
their series keys (measurement and escaped, sorted tags) are rendered by `Point` once per series
and cached, and only their numeric fields and timestamp are formatted per record, exactly as
`Point` formats them (tests/server/test_schema.py proves the lines identical).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from server.alerts import AlertEvent
from server.validation import UnitMessage
from wire.payloads import (
    CountsMessage,
    EventMessage,
    HealthMessage,
    StatusMessage,
    UnitState,
    VehicleClass,
)
from wire.summary import GateSummary, ProvinceSummary
from wire.topics import PREFIX
from wire.topics import SERVER_HEALTH as SERVER_HEALTH_TOPIC

LANE_COUNTS = "lane_counts"
LANE_QUEUE = "lane_queue"
LANE_EVENTS = "lane_events"
UNIT_HEALTH = "unit_health"
UNIT_STATUS = "unit_status"
ALERTS = "alerts"
SERVER_HEALTH = "server_health"
UNIT_SEQ = "unit_seq"
#: the cross-gate view (server/summary.py); versioned: a redefinition starts new series
GATE_SUMMARY = "gate_summary_v1"
PROVINCE_SUMMARY = "province_summary_v1"

FieldValue = int | float | bool | str

_EPOCH = datetime.fromtimestamp(0, UTC)
_MICROSECOND = timedelta(microseconds=1)


def _point(measurement: str, at: datetime, tags: dict[str, str], fields: dict[str, FieldValue | None]) -> Point:
    p = Point(measurement)  # type: ignore[no-untyped-call]
    p.time(at, WritePrecision.NS)  # type: ignore[no-untyped-call]
    for k, v in tags.items():
        p.tag(k, v)  # type: ignore[no-untyped-call]
    for k, f in fields.items():
        if f is not None:
            p.field(k, f)  # type: ignore[no-untyped-call]
    return p


def lines(points: Iterable[Point]) -> list[str]:
    out = []
    for p in points:
        line: str = p.to_line_protocol()  # type: ignore[no-untyped-call]
        if line:
            out.append(line)
    return out


@functools.lru_cache(maxsize=65_536)
def series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """`measurement,tag=value,...` as `Point` renders it (escaped, tags sorted), once per series.

    The cache is bounded; a gate has few series (units x lanes x classes x directions), so in
    practice every window record hits it."""
    p = Point(measurement)  # type: ignore[no-untyped-call]
    for k, v in tags:
        p.tag(k, v)  # type: ignore[no-untyped-call]
    p.field("_", 0)  # type: ignore[no-untyped-call]
    line: str = p.to_line_protocol()  # type: ignore[no-untyped-call]
    return line[: line.rindex(" _=0i")]


def epoch_ns(at: datetime) -> int:
    """Nanoseconds since the epoch, computed in integers as `Point` does (no float rounding)."""
    return ((at - _EPOCH) // _MICROSECOND) * 1000


def _float(value: float) -> str:
    """A float field as `Point` writes it: a whole number loses its `.0` (values are validated finite)."""
    text = repr(value if type(value) is float else float(value))
    return text[:-2] if text[-2:] == ".0" else text


_CLASSES = tuple(VehicleClass)


#: ((class, direction, series key), ...) and the queue's series key
LaneSeries = tuple[tuple[tuple[str, str, str], ...], str]


@functools.lru_cache(maxsize=16_384)
def _lane_series(gate: str, unit: str, lane: str, owned: tuple[str, ...]) -> LaneSeries:
    """A lane's series keys, once per lane and set of directions: ((class, direction, key), ...), queue key."""
    ids = (("gate", gate), ("lane", lane), ("unit", unit))
    counts = tuple((cls.value, d, series_key(LANE_COUNTS, (("class", cls.value), ("direction", d), *ids)))
                   for cls in _CLASSES for d in owned)
    return counts, series_key(LANE_QUEUE, ids)


def lines_for(message: UnitMessage, directions: Iterable[str] = ()) -> list[str]:
    """The lines of any validated unit message; `directions` are those its lane owns (counts only)."""
    if isinstance(message, CountsMessage):
        return counts_lines(message, directions)
    if isinstance(message, EventMessage):
        return lines(event_points(message))
    if isinstance(message, HealthMessage):
        return lines(health_points(message))
    return lines(status_points(message))


def counts_lines(m: CountsMessage, directions: Iterable[str] = ()) -> list[str]:
    """One `lane_counts` line per class and direction, plus the lane's `lane_queue` line.

    Every class gets a line for every direction the lane owns (`directions`, see
    server.ownership), zero when nothing crossed. A second record with the same key (a unit
    restarted inside a window, a clock stepped back) then replaces every count of the first,
    instead of leaving the first one's counts beside its own, and `total` always agrees with the
    counts. Zeros do not change Grafana's sum(), and the series are those the lane owns anyway.
    Every `lane_queue` field a record always has is written; the wait and clearance figures exist
    only when vehicles left the queue, so they are written only then (a replacing record without
    them leaves the first one's, which describe vehicles that really waited in that window).
    """
    ns = epoch_ns(m.window_start)
    counts = {cls.value: dirs for cls, dirs in m.counts.items()}
    owned = tuple(sorted({*directions, *(d for dirs in counts.values() for d in dirs)}))
    count_series, queue_series = _lane_series(m.gate, m.unit, m.lane, owned)
    empty: dict[str, int] = {}
    out = [f"{key} count={counts.get(cls, empty).get(d, 0):d}i {ns}" for cls, d, key in count_series]
    out.append(f"{queue_series} {_queue_fields(m)} {ns}")
    return out


def _queue_fields(m: CountsMessage) -> str:
    """The `lane_queue` fields in `Point`'s order (sorted by name), absent optional ones left out."""
    q = m.queue
    text = f"camera_up={_float(m.camera_up)}"
    if q.clearance_per_min is not None:
        text += f",clearance_per_min={_float(q.clearance_per_min)}"
    if q.expected_wait_s is not None:
        text += f",expected_wait_s={_float(q.expected_wait_s)}"
    text += f",frames={m.frames:d}i,length_max={q.length_max:d}i,length_mean={_float(q.length_mean)}"
    if m.loop_count is not None:
        text += f",loop_count={m.loop_count:d}i"
    text += f",seq={m.seq:d}i,stationary_max={q.stationary_max:d}i,total={m.total():d}i"
    if q.wait_max_s is not None:
        text += f",wait_max_s={_float(q.wait_max_s)}"
    if q.wait_p50_s is not None:
        text += f",wait_p50_s={_float(q.wait_p50_s)}"
    if q.wait_p90_s is not None:
        text += f",wait_p90_s={_float(q.wait_p90_s)}"
    return text + f",waits_n={q.waits_n:d}i,window_s={_float(m.window_s)}"


def event_points(m: EventMessage) -> list[Point]:
    e = m.event
    tags = {"gate": m.gate, "unit": m.unit, "lane": e.lane, "class": e.vehicle_class.value, "direction": e.direction}
    return [_point(LANE_EVENTS, e.at, tags, {"track_id": int(e.track_id), "wait_s": _f(e.wait_s), "seq": int(m.seq)})]


def health_points(m: HealthMessage) -> list[Point]:
    return [
        _point(UNIT_HEALTH, m.at, {"gate": m.gate, "unit": m.unit}, {
            "interval_s": float(m.interval_s),
            "fps": float(m.fps),
            "inference_ms": float(m.inference_ms),
            "camera": m.camera.value,
            "camera_up": m.camera.value == "up",
            "outbox_depth": int(m.outbox_depth),
            "outbox_oldest_s": _f(m.outbox_oldest_s),
            "dropped_records": int(m.dropped_records),
            "outbox_first_seq": None if m.outbox_first_seq is None else int(m.outbox_first_seq),
            "outbox_lost": int(m.outbox_lost),
            "cpu_temp_c": _f(m.cpu_temp_c),
            "throttled": m.throttled,
            "mem_mb": float(m.mem_mb),
            "uptime_s": float(m.uptime_s),
            "seq": int(m.seq),
        })
    ]


def status_points(m: StatusMessage) -> list[Point]:
    return [
        _point(UNIT_STATUS, m.at, {"gate": m.gate, "unit": m.unit}, {
            "state": m.state.value,
            "online": m.state == UnitState.ONLINE,
            "version": m.version,
            "config_hash": m.config_hash,
            "seq": int(m.seq),
        })
    ]


def alert_point(event: AlertEvent) -> Point:
    """One raise or clear, for Grafana annotations (`SELECT text FROM alerts WHERE ...`)."""
    return _point(ALERTS, event.at, {"gate": event.gate, "lane": event.lane, "rule": event.rule}, {
        "level": event.level.value,
        "level_rank": event.level.rank,
        "active": event.active,
        "expected_wait_s": _f(event.expected_wait_s),
        "text": event.text,
    })


def server_health_point(server_id: str, at: datetime, fields: dict[str, FieldValue | None]) -> Point:
    return _point(SERVER_HEALTH, at, {"server": server_id}, fields)


def unit_seq_point(gate: str, unit: str, at: datetime, fields: dict[str, FieldValue | None]) -> Point:
    """One unit's end-to-end acknowledgement at a health tick: Grafana alerts on `gaps` and `resets`."""
    return _point(UNIT_SEQ, at, {"gate": gate, "unit": unit}, fields)


_KIND_OF = {LANE_COUNTS: "counts", LANE_QUEUE: "counts", LANE_EVENTS: "events", UNIT_HEALTH: "health",
            UNIT_STATUS: "status"}


def origin_topic(line: str) -> str:
    """The topic a line came from, read back from its measurement and tags (for a dead letter
    about a point the database refused, perhaps long after its message was acknowledged)."""
    head = line.split(" ", 1)[0]
    measurement, _, tag_text = head.partition(",")
    tags = dict(t.partition("=")[::2] for t in tag_text.split(",") if "=" in t)
    gate, unit = tags.get("gate", "_"), tags.get("unit", "_")
    if measurement in _KIND_OF:
        return f"{PREFIX}/{gate}/{unit}/{_KIND_OF[measurement]}"
    if measurement == ALERTS:
        return f"{PREFIX}/{gate}/{tags.get('lane', '_')}/alert"
    return SERVER_HEALTH_TOPIC


def summary_points(gates: list[GateSummary], province: ProvinceSummary) -> list[Point]:
    """One `gate_summary_v1` point per gate and one `province_summary_v1` point, at the summary's
    time: a bucket computed again (a late record) overwrites its points."""
    out = [
        _point(GATE_SUMMARY, g.at, {"gate": g.gate}, {
            "lanes": g.lanes,
            "lanes_reporting": g.lanes_reporting,
            "trucks_arriving_per_h": float(g.trucks_arriving_per_h),
            "trucks_cleared_per_h": float(g.trucks_cleared_per_h),
            "vehicles_cleared_per_h": float(g.vehicles_cleared_per_h),
            "vehicles_queued": float(g.vehicles_queued),
            "expected_wait_s": _f(g.expected_wait_s),
            "rank": g.rank or 0,  # 0: not ranked (a null would let last() show an older rank)
        })
        for g in gates
    ]
    best = province.ranking[0] if province.best_gate is not None else None
    out.append(_point(PROVINCE_SUMMARY, province.at, {}, {
        "gates_ranked": len(province.ranking),
        "best_gate": province.best_gate,
        "best_wait_s": None if best is None else _f(best.expected_wait_s),
    }))
    return out


def _f(value: float | None) -> float | None:
    return None if value is None else float(value)
