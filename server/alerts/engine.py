"""The engine: what the rules share, and the order in which they hear the stream.

It keeps the lanes (their rules, units, last window, active alerts), the units (when they last
spoke), raising and clearing, the set of lanes whose published state changed, and the restore
from retained state; each rule in `server/alerts/rules/` keeps its own state and decides.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from server.alerts.base import AlertEvent, Lane, LaneKey, Rule, Unit, UnitKey, Window
from server.alerts.config import AlertsConfig
from server.alerts.gate_level import GATE_LEVEL, GateColour
from server.alerts.rules import RULES
from wire.payloads import (
    ActiveAlert,
    AlertLevel,
    AlertMessage,
    CountsMessage,
    EventMessage,
    HealthMessage,
    StatusMessage,
    WindowRecord,
)

UnitMessage = CountsMessage | EventMessage | StatusMessage | HealthMessage


def expected_wait(record: WindowRecord) -> float | None:
    """Queue / clearance rate, as the edge computed it or from its parts; None when nothing clears."""
    q = record.queue
    if q.expected_wait_s is not None:
        return q.expected_wait_s
    if q.clearance_per_min:
        return q.length_mean / (q.clearance_per_min / 60.0)
    return None


def _implements(rule: Rule, hook: str) -> bool:
    return getattr(type(rule), hook) is not getattr(Rule, hook)


class AlertEngine:
    """Keeps every lane's alert state; feed it validated messages in arrival order."""

    def __init__(self, config: AlertsConfig) -> None:
        self.config = config
        self._lanes: dict[LaneKey, Lane] = {}
        #: gate -> its lanes, for the gate colour judged after every record
        self._gate_lanes: dict[str, list[Lane]] = {}
        self._units: dict[UnitKey, Unit] = {}
        rules = [rule(self) for rule in RULES]
        # a hook calls only the rules that implement it: the silence check runs after every message
        self._unit_record_hooks = [r.on_unit_record for r in rules if _implements(r, "on_unit_record")]
        self._record_hooks = [r.on_record for r in rules if _implements(r, "on_record")]
        self._status_hooks = [r.on_status for r in rules if _implements(r, "on_status")]
        self._health_hooks = [r.on_health for r in rules if _implements(r, "on_health")]
        self._silence_hooks = [r.on_silence for r in rules if _implements(r, "on_silence")]
        self._gates = GateColour()
        #: gates whose colour must be judged at their next record even if its lane did not change:
        #: a new lane joined, or a restored state has not been judged against the live queues yet
        self._gate_unjudged: set[str] = set()
        self.now: datetime | None = None
        self.changed: set[LaneKey] = set()

    # -- queries -------------------------------------------------------------------------------

    def lanes(self) -> list[LaneKey]:
        return sorted(self._lanes)

    def state(self, gate: str, lane: str, at: datetime) -> AlertMessage:
        """The whole current state of a lane, as published (retained) to its signal light."""
        ln = self._lanes[(gate, lane)]
        active = sorted(ln.active.values(), key=lambda a: (-a.level.rank, a.rule))
        gate_alert = self._gates.alert(gate)
        if gate_alert is not None:
            active.insert(0, gate_alert)
        return AlertMessage(
            gate=gate, lane=lane, at=at, valid_s=self.config.valid_s, level=ln.level(self._gates.level(gate)),
            active=active[:20], expected_wait_s=ln.wait_s,
        )

    def gate_level(self, gate: str) -> AlertLevel:
        return self._gates.level(gate)

    def take_changed(self) -> set[LaneKey]:
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
        self._gate_unjudged.add(message.gate)
        for a in message.active:
            if a.rule == GATE_LEVEL:
                self._gates.restore(message.gate, a)
            else:
                ln.active[a.rule] = a
        return True

    def on_message(self, message: UnitMessage) -> list[AlertEvent]:
        if isinstance(message, CountsMessage):
            events = self._on_record(message.unit, message)  # a CountsMessage is its WindowRecord
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
        """What silence up to `now` raises (units that stopped talking). Silence has no timestamps
        of its own: the stream's time calls this after every message, and the caller may call it
        with a clock too."""
        events: list[AlertEvent] = []
        for hook in self._silence_hooks:
            events += hook(now)
        return events

    def _on_record(self, unit: str, r: WindowRecord) -> list[AlertEvent]:
        ln = self._lane(r.gate, r.lane)
        ln.units.add(unit)
        if ln.last_start is not None and r.window_start <= ln.last_start:
            return []  # a re-delivered or late window: its effect is already in the state
        before = (ln.queue, ln.wait_s)
        start, end = r.window_start, r.window_start + timedelta(seconds=r.window_s)
        gap = ln.last_end is not None and start - ln.last_end > timedelta(seconds=r.window_s / 2)
        ln.last_start, ln.last_end = start, end
        ln.wait_s = expected_wait(r)
        window = Window(unit, r, start, end, gap)
        events: list[AlertEvent] = []
        for hook in self._unit_record_hooks:
            events += hook(ln, window)
        for hook in self._record_hooks:
            events += hook(ln, window)
        if (ln.queue, ln.wait_s) == before and r.gate not in self._gate_unjudged:
            # the colour is a function of the lanes' queues and waits and the colour before: judged
            # again with none of them changed it stays as it is, so only a change pays for the sum
            # over the gate's lanes
            return events
        self._gate_unjudged.discard(r.gate)
        lanes = self._gate_lanes[r.gate]
        colour = self._gates.judge(r.gate, self.config.gate_level(r.gate), lanes, end)
        if colour:
            self.changed.update(other.key for other in lanes)
        return events + colour

    def _on_status(self, m: StatusMessage) -> list[AlertEvent]:
        u = self.unit(m.gate, m.unit)
        if u.status_at is not None and m.at <= u.status_at:
            return []
        u.status_at = m.at
        events: list[AlertEvent] = []
        for hook in self._status_hooks:
            events += hook(m)
        return events

    def _on_health(self, m: HealthMessage) -> list[AlertEvent]:
        u = self.unit(m.gate, m.unit)
        if u.health_at is not None and m.at <= u.health_at:
            return []
        u.health_at, u.health_interval_s = m.at, m.interval_s
        events: list[AlertEvent] = []
        for hook in self._health_hooks:
            events += hook(m)
        return events

    # -- what the rules share (the `Alerts` protocol) ----------------------------------------------

    def _lane(self, gate: str, lane: str) -> Lane:
        key = (gate, lane)
        if key not in self._lanes:
            self._lanes[key] = Lane(gate, lane, self.config.lane_rules(gate, lane))
            self._gate_lanes.setdefault(gate, []).append(self._lanes[key])
            self._gate_unjudged.add(gate)
            self.changed.add(key)
        return self._lanes[key]

    def unit(self, gate: str, unit: str) -> Unit:
        return self._units.setdefault((gate, unit), Unit())

    def units(self) -> list[tuple[UnitKey, Unit]]:
        return list(self._units.items())

    def unit_lanes(self, gate: str, unit: str) -> list[Lane]:
        return [ln for (g, _), ln in self._lanes.items() if g == gate and unit in ln.units]

    def raise_alert(self, lane: Lane, rule: str, at: datetime, level: AlertLevel, detail: str) -> list[AlertEvent]:
        if rule in lane.active:
            return []
        lane.active[rule] = ActiveAlert(rule=rule, level=level, since=at, detail=detail[:200])
        self.changed.add(lane.key)
        return [AlertEvent(lane.gate, lane.lane, rule, at, level, True, lane.wait_s, detail)]

    def clear_alert(self, lane: Lane, rule: str, at: datetime, detail: str) -> list[AlertEvent]:
        was = lane.active.pop(rule, None)
        if was is None:
            return []
        self.changed.add(lane.key)
        return [AlertEvent(lane.gate, lane.lane, rule, at, was.level, False, lane.wait_s, detail)]
