"""Unit offline: the unit's status says so (the broker's Last Will), or its health stopped.

A unit has no lane of its own: the alert is raised on every lane it has sent records for.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import Field

from server.alerts.base import AlertEvent, Alerts, Lane, Rule, RuleConfig, UnitKey, Window
from wire.payloads import AlertLevel, HealthMessage, StatusMessage, UnitState


class UnitOfflineRule(RuleConfig):
    enabled: bool = Field(True, title="Enabled", description="raise unit_offline alerts in this scope")
    missed_health: float = Field(
        3,
        gt=0,
        title="Missed health intervals",
        description="health intervals without a health message before the unit counts as offline",
    )
    level: AlertLevel = Field(
        AlertLevel.YELLOW, title="Level while active", description="colour the unit's lanes show while it is offline"
    )


@dataclass
class _Liveness:
    #: the last status said offline
    offline: bool = False
    #: no health for `missed_health` intervals, and nothing heard since
    silent: bool = False


class UnitOffline(Rule):
    name = "unit_offline"
    title = "Unit offline"
    description = "status offline (LWT) or health silent"
    config_model = UnitOfflineRule
    order = 30

    def __init__(self, alerts: Alerts) -> None:
        super().__init__(alerts)
        self._units: defaultdict[UnitKey, _Liveness] = defaultdict(_Liveness)

    def on_unit_record(self, lane: Lane, window: Window) -> list[AlertEvent]:
        gate, unit = lane.gate, window.unit
        health_at = self.alerts.unit(gate, unit).health_at
        live = self._units[(gate, unit)]
        if live.silent and (health_at is None or window.end > health_at):
            live.silent = False  # it talks again
            return self._judge(gate, unit, live, window.end)
        if self.name in lane.active and not live.offline and not live.silent:
            return self.alerts.clear_alert(lane, self.name, window.end, f"unit {unit} sends records")  # restored, stale
        return []

    def on_status(self, message: StatusMessage) -> list[AlertEvent]:
        live = self._units[(message.gate, message.unit)]
        live.offline = message.state == UnitState.OFFLINE
        if not live.offline:
            live.silent = False
        return self._judge(message.gate, message.unit, live, message.at)

    def on_health(self, message: HealthMessage) -> list[AlertEvent]:
        live = self._units[(message.gate, message.unit)]
        if not live.silent:
            return []
        live.silent = False
        return self._judge(message.gate, message.unit, live, message.at)

    def on_silence(self, now: datetime) -> list[AlertEvent]:
        """Raise for units whose health stopped for `missed_health` intervals."""
        events: list[AlertEvent] = []
        for (gate, unit), u in self.alerts.units():
            if u.health_at is None or u.health_interval_s is None:
                continue
            live = self._units[(gate, unit)]
            if live.silent:
                continue
            lanes = self.alerts.unit_lanes(gate, unit)
            missed = min((ln.rules.of(UnitOfflineRule).missed_health for ln in lanes), default=3.0)
            deadline = u.health_at + timedelta(seconds=missed * u.health_interval_s)
            if now >= deadline:
                live.silent = True
                events += self._raise(gate, unit, deadline, f"no health from {unit} since {u.health_at.isoformat()}")
        return events

    def _judge(self, gate: str, unit: str, live: _Liveness, at: datetime) -> list[AlertEvent]:
        if live.offline or live.silent:
            return self._raise(gate, unit, at, f"unit {unit} offline")
        events: list[AlertEvent] = []
        for lane in self.alerts.unit_lanes(gate, unit):
            events += self.alerts.clear_alert(lane, self.name, at, f"unit {unit} online")
        return events

    def _raise(self, gate: str, unit: str, at: datetime, detail: str) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        for lane in self.alerts.unit_lanes(gate, unit):
            rule = lane.rules.of(UnitOfflineRule)
            if rule.enabled:
                events += self.alerts.raise_alert(lane, self.name, at, rule.level, detail)
        return events
