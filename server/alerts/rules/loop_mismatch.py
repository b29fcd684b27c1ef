"""Camera vs loop sensor: the lane's induction loop and the camera disagree on how many vehicles passed,
summed over a few windows so one window's timing noise does not count."""

from __future__ import annotations

from collections import deque

from pydantic import Field

from server.alerts.base import AlertEvent, Alerts, Lane, LaneKey, Rule, RuleConfig, Window
from wire.payloads import AlertLevel


class LoopMismatchRule(RuleConfig):
    enabled: bool = Field(True, title="Enabled", description="raise loop_mismatch alerts in this scope")
    max_share: float = Field(0.2, ge=0, le=1, title="Max disagreement share", description="|loop-camera|/max")
    over_windows: int = Field(6, ge=1, le=1000, title="Windows summed", description="smooths per-window noise")
    min_vehicles: int = Field(10, ge=1, title="Min vehicles", description="judge only once this many passed")
    level: AlertLevel = Field(
        AlertLevel.YELLOW,
        title="Level while active",
        description="colour the lane shows while camera and loop disagree",
    )


class LoopMismatch(Rule):
    name = "loop_mismatch"
    title = "Camera vs loop sensor"
    description = "the lane's loop sensor and the camera disagree on the count"
    config_model = LoopMismatchRule
    order = 50

    def __init__(self, alerts: Alerts) -> None:
        super().__init__(alerts)
        #: (loop count, camera count) of the lane's last windows that had a loop count
        self._windows: dict[LaneKey, deque[tuple[int, int]]] = {}

    def on_record(self, lane: Lane, window: Window) -> list[AlertEvent]:
        rule = lane.rules.of(LoopMismatchRule)
        r = window.record
        if not rule.enabled or r.loop_count is None:
            return []
        windows = self._windows.get(lane.key)
        if windows is None:
            windows = self._windows[lane.key] = deque(maxlen=rule.over_windows)
        windows.append((r.loop_count, r.total()))
        loop_n = sum(a for a, _ in windows)
        cam_n = sum(b for _, b in windows)
        most = max(loop_n, cam_n)
        if most < rule.min_vehicles:
            return []
        share = abs(loop_n - cam_n) / most
        detail = f"loop {loop_n} vs camera {cam_n} over {len(windows)} windows ({share:.0%})"
        if share > rule.max_share:
            return self.alerts.raise_alert(lane, self.name, window.end, rule.level, detail)
        return self.alerts.clear_alert(lane, self.name, window.end, detail)
