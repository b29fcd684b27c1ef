"""Camera down: a window in which the camera delivered frames too little of the time, or a unit whose
health says its camera is not up. Either source keeps the alert raised."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from server.alerts.base import AlertEvent, Alerts, Lane, LaneKey, Rule, RuleConfig, UnitKey, Window
from wire.payloads import AlertLevel, CameraState, HealthMessage


class CameraDownRule(RuleConfig):
    enabled: bool = Field(True, title="Enabled", description="raise camera_down alerts in this scope")
    min_camera_up: float = Field(
        0.5,
        ge=0,
        le=1,
        title="Min camera uptime share per window",
        description="a window where the camera delivered frames for less than this share is 'down'",
    )
    level: AlertLevel = Field(
        AlertLevel.YELLOW, title="Level while active", description="colour the lane shows while its camera is down"
    )


class CameraDown(Rule):
    name = "camera_down"
    title = "Camera down"
    description = "from window uptime or unit health"
    config_model = CameraDownRule
    order = 40

    def __init__(self, alerts: Alerts) -> None:
        super().__init__(alerts)
        #: the lane's last window said down
        self._record_down: dict[LaneKey, bool] = {}
        #: the unit's last health said down
        self._health_down: dict[UnitKey, bool] = {}

    def on_record(self, lane: Lane, window: Window) -> list[AlertEvent]:
        rule = lane.rules.of(CameraDownRule)
        if not rule.enabled:
            return []
        up = window.record.camera_up
        self._record_down[lane.key] = up < rule.min_camera_up
        return self._judge(lane, window.end, f"camera up {up:.0%} of the window")

    def on_health(self, message: HealthMessage) -> list[AlertEvent]:
        self._health_down[(message.gate, message.unit)] = message.camera != CameraState.UP
        events: list[AlertEvent] = []
        for lane in self.alerts.unit_lanes(message.gate, message.unit):
            if lane.rules.of(CameraDownRule).enabled:
                events += self._judge(lane, message.at, f"unit {message.unit} reports camera {message.camera.value}")
        return events

    def _judge(self, lane: Lane, at: datetime, detail: str) -> list[AlertEvent]:
        health_down = any(self._health_down.get((lane.gate, u), False) for u in lane.units)
        if self._record_down.get(lane.key, False) or health_down:
            return self.alerts.raise_alert(lane, self.name, at, lane.rules.of(CameraDownRule).level, detail)
        return self.alerts.clear_alert(lane, self.name, at, detail)
