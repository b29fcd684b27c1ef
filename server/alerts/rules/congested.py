"""Lane congested: a long queue, held for a while, with hysteresis so a queue hovering at the
threshold does not flap. Its metric is also the lane's queue length that the gate colour sums."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field

from server.alerts.base import AlertEvent, Alerts, Lane, LaneKey, Rule, RuleConfig, Window
from wire.payloads import AlertLevel


class CongestedRule(RuleConfig):
    enabled: bool = Field(True, title="Enabled", description="raise congested alerts in this scope")
    metric: Literal["length_max", "length_mean", "stationary_max"] = Field(
        "length_max",
        title="Queue metric",
        description="which QueueStats value is the queue length",
    )
    raise_at: float = Field(8, ge=0, title="Raise at (vehicles)", description="queue >= this ...")
    raise_for_s: float = Field(
        60, ge=0, title="... for at least (s)", description="how long the queue must stay at or above raise_at"
    )
    clear_below: float = Field(4, ge=0, title="Clear below (vehicles)", description="queue < this ...")
    clear_for_s: float = Field(
        60, ge=0, title="... for at least (s)", description="how long the queue must stay below clear_below"
    )
    level: AlertLevel = Field(
        AlertLevel.ORANGE, title="Level while active", description="colour the lane shows while congested"
    )

    def problem(self) -> str | None:
        if self.clear_below > self.raise_at:
            return f"clear_below {self.clear_below} > raise_at {self.raise_at}"
        return None


@dataclass
class _Held:
    above_since: datetime | None = None
    below_since: datetime | None = None


class Congested(Rule):
    name = "congested"
    title = "Lane congested"
    description = "long queue, with hysteresis"
    config_model = CongestedRule
    order = 10

    def __init__(self, alerts: Alerts) -> None:
        super().__init__(alerts)
        self._held: defaultdict[LaneKey, _Held] = defaultdict(_Held)

    def on_record(self, lane: Lane, window: Window) -> list[AlertEvent]:
        rule = lane.rules.of(CongestedRule)
        held = self._held[lane.key]
        if window.gap:
            held.above_since = held.below_since = None
        lane.queue = q = float(getattr(window.record.queue, rule.metric))
        if not rule.enabled:
            return []
        start, end = window.start, window.end
        if self.name not in lane.active:
            if q < rule.raise_at:
                held.above_since = None
                return []
            held.above_since = held.above_since or start
            if (end - held.above_since).total_seconds() >= rule.raise_for_s:
                held.below_since = None
                return self.alerts.raise_alert(
                    lane, self.name, end, rule.level,
                    f"queue {q:g} >= {rule.raise_at:g} for {(end - held.above_since).total_seconds():g} s")
            return []
        if q >= rule.clear_below:
            held.below_since = None
            return []
        held.below_since = held.below_since or start
        if (end - held.below_since).total_seconds() >= rule.clear_for_s:
            held.above_since = None
            return self.alerts.clear_alert(
                lane, self.name, end,
                f"queue {q:g} < {rule.clear_below:g} for {(end - held.below_since).total_seconds():g} s")
        return []
