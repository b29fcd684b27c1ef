"""Lane stalled: vehicles wait in the queue and nobody crosses, e.g. a closed booth or a broken-down truck."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from server.alerts.base import AlertEvent, Alerts, Lane, LaneKey, Rule, RuleConfig, Window
from wire.payloads import AlertLevel


class StalledRule(RuleConfig):
    enabled: bool = Field(True, title="Enabled", description="raise stalled alerts in this scope")
    min_queue: float = Field(1, ge=0, title="Queued vehicles", description="stationary_max >= this counts as queued")
    for_s: float = Field(
        300, ge=0, title="No crossings for (s)", description="how long vehicles wait with no crossing at all"
    )
    level: AlertLevel = Field(
        AlertLevel.RED, title="Level while active", description="colour the lane shows while stalled"
    )


class Stalled(Rule):
    name = "stalled"
    title = "Lane stalled"
    description = "vehicles queued but nobody crosses"
    config_model = StalledRule
    order = 20

    def __init__(self, alerts: Alerts) -> None:
        super().__init__(alerts)
        self._since: dict[LaneKey, datetime] = {}

    def on_record(self, lane: Lane, window: Window) -> list[AlertEvent]:
        if window.gap:
            self._since.pop(lane.key, None)
        rule = lane.rules.of(StalledRule)
        if not rule.enabled:
            return []
        r = window.record
        queued = r.queue.stationary_max >= rule.min_queue and r.queue.stationary_max > 0
        if queued and r.total() == 0:
            since = self._since.setdefault(lane.key, window.start)
            if (window.end - since).total_seconds() >= rule.for_s:
                detail = f"{r.queue.stationary_max} queued, no crossings since {since.isoformat()}"
                return self.alerts.raise_alert(lane, self.name, window.end, rule.level, detail)
            return []
        self._since.pop(lane.key, None)
        return self.alerts.clear_alert(lane, self.name, window.end, "crossings resumed" if queued else "queue empty")
