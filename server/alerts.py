"""Alert rules, evaluated on the message stream rather than by querying the database.

Time is the records' own: a window "happens" at window_start + window_s, a status or health
message at its `at`. Nothing here reads the wall clock, so replaying the same records gives
the same raises and clears at the same instants, and a test can drive a day of traffic in
milliseconds. (Only `check_silence`, for units that stopped talking altogether, needs a clock
the caller supplies: silence produces no timestamps of its own.)

Rules (see `config.LaneRules`): lane congested, with hysteresis so a queue hovering at the
threshold does not flap; lane stalled; unit offline; camera down; camera vs loop-sensor
disagreement; and the gate's colour on the Vietnam single-window scale. A lane's published
state is all of its active alerts plus the gate colour; its level is the worst of them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from server.config import AlertsConfig, GateLevelConfig, LaneRules
from wire.payloads import (
    ActiveAlert,
    AlertLevel,
    AlertMessage,
    CameraState,
    CountsMessage,
    EventMessage,
    HealthMessage,
    StatusMessage,
    UnitState,
    WindowRecord,
)

CONGESTED = "congested"
STALLED = "stalled"
UNIT_OFFLINE = "unit_offline"
CAMERA_DOWN = "camera_down"
LOOP_MISMATCH = "loop_mismatch"
GATE_LEVEL = "gate_level"
#: the `lane` tag of gate-wide alert points (not a lane id, so it cannot clash with one)
GATE_SCOPE = "_gate"

UnitMessage = CountsMessage | EventMessage | StatusMessage | HealthMessage


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One raise or clear, stamped with stream time."""

    gate: str
    lane: str
    rule: str
    at: datetime
    level: AlertLevel
    active: bool
    expected_wait_s: float | None
    text: str


def expected_wait(record: WindowRecord) -> float | None:
    """Queue / clearance rate, as the edge computed it or from its parts; None when nothing clears."""
    q = record.queue
    if q.expected_wait_s is not None:
        return q.expected_wait_s
    if q.clearance_per_min:
        return q.length_mean / (q.clearance_per_min / 60.0)
    return None


@dataclass
class _Lane:
    gate: str
    lane: str
    rules: LaneRules
    units: set[str] = field(default_factory=set)
    last_start: datetime | None = None
    last_end: datetime | None = None
    above_since: datetime | None = None
    below_since: datetime | None = None
    stall_since: datetime | None = None
    camera_record_down: bool = False
    loop: deque[tuple[int, int]] = field(default_factory=deque)
    queue: float = 0.0
    wait_s: float | None = None
    active: dict[str, ActiveAlert] = field(default_factory=dict)

    def level(self, gate_level: AlertLevel) -> AlertLevel:
        levels = [a.level for a in self.active.values()] + [gate_level]
        return max(levels, key=lambda lv: lv.rank)


@dataclass
class _Unit:
    status_at: datetime | None = None
    status_offline: bool = False
    health_at: datetime | None = None
    health_interval_s: float | None = None
    silent: bool = False
    camera_health_down: bool = False


@dataclass
class _Gate:
    level: AlertLevel = AlertLevel.GREEN
    since: datetime | None = None


class AlertEngine:
    """Keeps every lane's alert state; feed it validated messages in arrival order."""

    #: share of a threshold the gate metric must fall under before the colour steps down
    GATE_CLEAR_RATIO = 0.8

    def __init__(self, config: AlertsConfig) -> None:
        self.config = config
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._units: dict[tuple[str, str], _Unit] = {}
        self._gates: dict[str, _Gate] = {}
        self.now: datetime | None = None
        self.changed: set[tuple[str, str]] = set()

    # -- queries -------------------------------------------------------------------------------

    def lanes(self) -> list[tuple[str, str]]:
        return sorted(self._lanes)

    def state(self, gate: str, lane: str, at: datetime) -> AlertMessage:
        """The whole current state of a lane, as published (retained) to its signal light."""
        ln = self._lanes[(gate, lane)]
        g = self._gates.get(gate, _Gate())
        active = sorted(ln.active.values(), key=lambda a: (-a.level.rank, a.rule))
        if g.level != AlertLevel.GREEN and g.since is not None:
            active.insert(0, ActiveAlert(rule=GATE_LEVEL, level=g.level, since=g.since,
                                         detail=f"gate {gate} is {g.level.value}"))
        return AlertMessage(
            gate=gate, lane=lane, at=at, valid_s=self.config.valid_s, level=ln.level(g.level),
            active=active[:20], expected_wait_s=ln.wait_s,
        )

    def gate_level(self, gate: str) -> AlertLevel:
        return self._gates.get(gate, _Gate()).level

    def take_changed(self) -> set[tuple[str, str]]:
        """Lanes whose published state changed since the last call."""
        out, self.changed = self.changed, set()
        return out

    # -- input ---------------------------------------------------------------------------------

    def restore(self, message: AlertMessage) -> bool:
        """Seed a lane from its retained state after a restart, so a congested lane stays raised
        (and clears by its hysteresis) instead of flashing green until the rule fires again.

        Only a lane the engine has not seen yet is restored: live records always win.
        """
        key = (message.gate, message.lane)
        if key in self._lanes:
            return False
        ln = self._lane(message.gate, message.lane)
        self.changed.discard(key)  # the broker already holds exactly this state
        ln.wait_s = message.expected_wait_s
        for a in message.active:
            if a.rule == GATE_LEVEL:
                g = self._gates.setdefault(message.gate, _Gate())
                if a.level.rank > g.level.rank:
                    g.level, g.since = a.level, a.since
            else:
                ln.active[a.rule] = a
        return True

    def on_message(self, message: UnitMessage) -> list[AlertEvent]:
        if isinstance(message, CountsMessage):
            events = self._on_record(message.unit, message.record())
            stamp = message.window_start + timedelta(seconds=message.window_s)
        elif isinstance(message, StatusMessage):
            events = self._on_status(message)
            stamp = message.at
        elif isinstance(message, HealthMessage):
            events = self._on_health(message)
            stamp = message.at
        else:
            return []
        if self.now is None or stamp > self.now:
            self.now = stamp
        return events + self.check_silence(self.now)

    def check_silence(self, now: datetime) -> list[AlertEvent]:
        """Raise unit_offline for units whose health stopped for `missed_health` intervals."""
        events: list[AlertEvent] = []
        for (gate, unit), u in self._units.items():
            if u.silent or u.health_at is None or u.health_interval_s is None:
                continue
            lanes = self._unit_lanes(gate, unit)
            missed = min((ln.rules.unit_offline.missed_health for ln in lanes), default=3.0)
            deadline = u.health_at + timedelta(seconds=missed * u.health_interval_s)
            if now >= deadline:
                u.silent = True
                events += self._set_unit_offline(gate, unit, u, deadline, f"no health from {unit} since "
                                                 f"{u.health_at.isoformat()}")
        return events

    # -- rules ---------------------------------------------------------------------------------

    def _lane(self, gate: str, lane: str) -> _Lane:
        key = (gate, lane)
        if key not in self._lanes:
            self._lanes[key] = _Lane(gate, lane, self.config.lane_rules(gate, lane))
            self.changed.add(key)
        return self._lanes[key]

    def _unit(self, gate: str, unit: str) -> _Unit:
        return self._units.setdefault((gate, unit), _Unit())

    def _unit_lanes(self, gate: str, unit: str) -> list[_Lane]:
        return [ln for (g, _), ln in self._lanes.items() if g == gate and unit in ln.units]

    def _raise(self, ln: _Lane, rule: str, at: datetime, level: AlertLevel, detail: str) -> list[AlertEvent]:
        if rule in ln.active:
            return []
        ln.active[rule] = ActiveAlert(rule=rule, level=level, since=at, detail=detail[:200])
        self.changed.add((ln.gate, ln.lane))
        return [AlertEvent(ln.gate, ln.lane, rule, at, level, True, ln.wait_s, detail)]

    def _clear(self, ln: _Lane, rule: str, at: datetime, detail: str) -> list[AlertEvent]:
        was = ln.active.pop(rule, None)
        if was is None:
            return []
        self.changed.add((ln.gate, ln.lane))
        return [AlertEvent(ln.gate, ln.lane, rule, at, was.level, False, ln.wait_s, detail)]

    def _on_record(self, unit: str, r: WindowRecord) -> list[AlertEvent]:
        ln = self._lane(r.gate, r.lane)
        ln.units.add(unit)
        if ln.last_start is not None and r.window_start <= ln.last_start:
            return []  # a re-delivered or late window: its effect is already in the state
        start, end = r.window_start, r.window_start + timedelta(seconds=r.window_s)
        if ln.last_end is not None and start - ln.last_end > timedelta(seconds=r.window_s / 2):
            # a gap in the windows: durations must not bridge time nobody observed
            ln.above_since = ln.below_since = ln.stall_since = None
        ln.last_start, ln.last_end = start, end
        ln.queue = float(getattr(r.queue, ln.rules.congested.metric))
        ln.wait_s = expected_wait(r)
        u = self._unit(r.gate, unit)
        events: list[AlertEvent] = []
        if u.silent and (u.health_at is None or end > u.health_at):
            u.silent = False  # it talks again
            events += self._update_unit_offline(r.gate, unit, u, end)
        elif UNIT_OFFLINE in ln.active and not u.status_offline and not u.silent:
            events += self._clear(ln, UNIT_OFFLINE, end, f"unit {unit} sends records")  # restored, now stale
        events += self._congested(ln, start, end)
        events += self._stalled(ln, r, start, end)
        events += self._camera_record(ln, r, end)
        events += self._loop(ln, r, end)
        events += self._gate_level(r.gate, end)
        return events

    def _congested(self, ln: _Lane, start: datetime, end: datetime) -> list[AlertEvent]:
        rule = ln.rules.congested
        if not rule.enabled:
            return []
        q = ln.queue
        if CONGESTED not in ln.active:
            if q < rule.raise_at:
                ln.above_since = None
                return []
            ln.above_since = ln.above_since or start
            if (end - ln.above_since).total_seconds() >= rule.raise_for_s:
                ln.below_since = None
                return self._raise(ln, CONGESTED, end, rule.level,
                                   f"queue {q:g} >= {rule.raise_at:g} for {(end - ln.above_since).total_seconds():g} s")
            return []
        if q >= rule.clear_below:
            ln.below_since = None
            return []
        ln.below_since = ln.below_since or start
        if (end - ln.below_since).total_seconds() >= rule.clear_for_s:
            ln.above_since = None
            return self._clear(ln, CONGESTED, end,
                               f"queue {q:g} < {rule.clear_below:g} for {(end - ln.below_since).total_seconds():g} s")
        return []

    def _stalled(self, ln: _Lane, r: WindowRecord, start: datetime, end: datetime) -> list[AlertEvent]:
        rule = ln.rules.stalled
        if not rule.enabled:
            return []
        queued = r.queue.stationary_max >= rule.min_queue and r.queue.stationary_max > 0
        if queued and r.total() == 0:
            ln.stall_since = ln.stall_since or start
            if (end - ln.stall_since).total_seconds() >= rule.for_s:
                return self._raise(ln, STALLED, end, rule.level,
                                   f"{r.queue.stationary_max} queued, no crossings since {ln.stall_since.isoformat()}")
            return []
        ln.stall_since = None
        return self._clear(ln, STALLED, end, "crossings resumed" if queued else "queue empty")

    def _camera_record(self, ln: _Lane, r: WindowRecord, end: datetime) -> list[AlertEvent]:
        if not ln.rules.camera_down.enabled:
            return []
        ln.camera_record_down = r.camera_up < ln.rules.camera_down.min_camera_up
        return self._camera_eval(ln, end, f"camera up {r.camera_up:.0%} of the window")

    def _camera_eval(self, ln: _Lane, at: datetime, detail: str) -> list[AlertEvent]:
        rule = ln.rules.camera_down
        health_down = any(self._unit(ln.gate, u).camera_health_down for u in ln.units)
        if ln.camera_record_down or health_down:
            return self._raise(ln, CAMERA_DOWN, at, rule.level, detail)
        return self._clear(ln, CAMERA_DOWN, at, detail)

    def _loop(self, ln: _Lane, r: WindowRecord, end: datetime) -> list[AlertEvent]:
        rule = ln.rules.loop_mismatch
        if not rule.enabled or r.loop_count is None:
            return []
        ln.loop.append((r.loop_count, r.total()))
        while len(ln.loop) > rule.over_windows:
            ln.loop.popleft()
        loop_n = sum(a for a, _ in ln.loop)
        cam_n = sum(b for _, b in ln.loop)
        most = max(loop_n, cam_n)
        if most < rule.min_vehicles:
            return []
        share = abs(loop_n - cam_n) / most
        detail = f"loop {loop_n} vs camera {cam_n} over {len(ln.loop)} windows ({share:.0%})"
        if share > rule.max_share:
            return self._raise(ln, LOOP_MISMATCH, end, rule.level, detail)
        return self._clear(ln, LOOP_MISMATCH, end, detail)

    def _gate_level(self, gate: str, at: datetime) -> list[AlertEvent]:
        cfg: GateLevelConfig = self.config.gate_level(gate)
        if not cfg.enabled:
            return []
        lanes = [ln for (g, _), ln in self._lanes.items() if g == gate]
        if cfg.metric == "queue_total":
            value = sum(ln.queue for ln in lanes)
        else:
            value = max((ln.wait_s or 0.0 for ln in lanes), default=0.0)
        g = self._gates.setdefault(gate, _Gate())
        thresholds = [(AlertLevel.RED, cfg.red), (AlertLevel.ORANGE, cfg.orange), (AlertLevel.YELLOW, cfg.yellow)]
        up = next((lv for lv, t in thresholds if value >= t and t > 0), AlertLevel.GREEN)
        level = g.level
        if up.rank > g.level.rank:
            level = up
        else:
            # step down only once clearly below the current colour's threshold: no flapping
            while level != AlertLevel.GREEN:
                t = dict(thresholds)[level]
                if value >= t * self.GATE_CLEAR_RATIO:
                    break
                level = AlertLevel(list(AlertLevel)[level.rank - 1])
            if level.rank < up.rank:
                level = up
        if level == g.level:
            return []
        old, g.level, g.since = g.level, level, at
        for ln in lanes:
            self.changed.add((gate, ln.lane))
        return [AlertEvent(gate, GATE_SCOPE, GATE_LEVEL, at, level, level != AlertLevel.GREEN, None,
                           f"gate {gate} {old.value} -> {level.value} ({cfg.metric} {value:g})")]

    def _on_status(self, m: StatusMessage) -> list[AlertEvent]:
        u = self._unit(m.gate, m.unit)
        if u.status_at is not None and m.at <= u.status_at:
            return []
        u.status_at = m.at
        u.status_offline = m.state == UnitState.OFFLINE
        if not u.status_offline:
            u.silent = False
        return self._update_unit_offline(m.gate, m.unit, u, m.at)

    def _on_health(self, m: HealthMessage) -> list[AlertEvent]:
        u = self._unit(m.gate, m.unit)
        if u.health_at is not None and m.at <= u.health_at:
            return []
        u.health_at, u.health_interval_s = m.at, m.interval_s
        events: list[AlertEvent] = []
        if u.silent:
            u.silent = False
            events += self._update_unit_offline(m.gate, m.unit, u, m.at)
        u.camera_health_down = m.camera != CameraState.UP
        for ln in self._unit_lanes(m.gate, m.unit):
            if ln.rules.camera_down.enabled:
                events += self._camera_eval(ln, m.at, f"unit {m.unit} reports camera {m.camera.value}")
        return events

    def _update_unit_offline(self, gate: str, unit: str, u: _Unit, at: datetime) -> list[AlertEvent]:
        if u.status_offline or u.silent:
            return self._set_unit_offline(gate, unit, u, at, f"unit {unit} offline")
        events: list[AlertEvent] = []
        for ln in self._unit_lanes(gate, unit):
            events += self._clear(ln, UNIT_OFFLINE, at, f"unit {unit} online")
        return events

    def _set_unit_offline(self, gate: str, unit: str, u: _Unit, at: datetime, detail: str) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        for ln in self._unit_lanes(gate, unit):
            if ln.rules.unit_offline.enabled:
                events += self._raise(ln, UNIT_OFFLINE, at, ln.rules.unit_offline.level, detail)
        return events
