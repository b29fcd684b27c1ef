"""The gate's colour on Vietnam's single-window scale (green, yellow, orange, red), from all its lanes.

Not a lane rule: it is configured per gate (`alerts.level`, `alerts.gates.<gate>.level`), judged
after every lane rule has seen a window, and shown on every lane of the gate as one more active
alert (`gate_level`). Its raises and clears are written under the lane tag `_gate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from common.config import StrictModel
from server.alerts.base import AlertEvent, Lane
from wire.payloads import ActiveAlert, AlertLevel

GATE_LEVEL = "gate_level"
_LEVELS = tuple(AlertLevel)
_RANK = {level: i for i, level in enumerate(_LEVELS)}
#: the `lane` tag of gate-wide alert points (not a lane id, so it cannot clash with one)
GATE_SCOPE = "_gate"


class GateLevelConfig(StrictModel):
    """Thresholds of the gate's colour (green, yellow, orange, red) on the single-window scale."""

    enabled: bool = Field(True, title="Enabled", description="compute and publish the gate colour")
    metric: Literal["queue_total", "expected_wait_max_s"] = Field(
        "queue_total",
        title="Gate metric",
        description="sum of lane queues, or the longest expected wait of any lane (s)",
    )
    yellow: float = Field(10, ge=0, title="Yellow at", description="metric value at which the gate turns yellow")
    orange: float = Field(25, ge=0, title="Orange at", description="metric value at which the gate turns orange")
    red: float = Field(50, ge=0, title="Red at", description="metric value at which the gate turns red")

    @model_validator(mode="after")
    def _ordered(self) -> GateLevelConfig:
        if not self.yellow <= self.orange <= self.red:
            raise ValueError("thresholds must satisfy yellow <= orange <= red")
        return self


@dataclass
class _Gate:
    level: AlertLevel = AlertLevel.GREEN
    since: datetime | None = None


class GateColour:
    """Every gate's colour, stepping up at once and down only clearly below a threshold."""

    #: share of a threshold the gate metric must fall under before the colour steps down
    CLEAR_RATIO = 0.8

    def __init__(self) -> None:
        self._gates: dict[str, _Gate] = {}

    def level(self, gate: str) -> AlertLevel:
        return self._gates.get(gate, _Gate()).level

    def alert(self, gate: str) -> ActiveAlert | None:
        """The colour as one of each lane's active alerts; None while green."""
        g = self._gates.get(gate, _Gate())
        if g.level == AlertLevel.GREEN or g.since is None:
            return None
        return ActiveAlert(rule=GATE_LEVEL, level=g.level, since=g.since, detail=f"gate {gate} is {g.level.value}")

    def restore(self, gate: str, alert: ActiveAlert) -> None:
        """Seed from a lane's retained state; a gate's lanes may disagree, the worst wins."""
        g = self._gates.setdefault(gate, _Gate())
        if alert.level.rank > g.level.rank:
            g.level, g.since = alert.level, alert.since

    def judge(self, gate: str, cfg: GateLevelConfig, lanes: list[Lane], at: datetime) -> list[AlertEvent]:
        """The colour after a window of one of `lanes` (all the gate's lanes); an event when it changes.
        It runs after every record, so levels are compared by a rank table, not `AlertLevel.rank`."""
        if not cfg.enabled:
            return []
        if cfg.metric == "queue_total":
            value = sum(ln.queue for ln in lanes)
        else:
            value = max((ln.wait_s or 0.0 for ln in lanes), default=0.0)
        g = self._gates.setdefault(gate, _Gate())
        thresholds = ((AlertLevel.RED, cfg.red), (AlertLevel.ORANGE, cfg.orange), (AlertLevel.YELLOW, cfg.yellow))
        up = next((lv for lv, t in thresholds if value >= t and t > 0), AlertLevel.GREEN)
        level = g.level
        if _RANK[up] > _RANK[g.level]:
            level = up
        else:
            # step down only once clearly below the current colour's threshold: no flapping
            while level != AlertLevel.GREEN:
                t = dict(thresholds)[level]
                if value >= t * self.CLEAR_RATIO:
                    break
                level = _LEVELS[_RANK[level] - 1]
            if _RANK[level] < _RANK[up]:
                level = up
        if level == g.level:
            return []
        old, g.level, g.since = g.level, level, at
        return [AlertEvent(gate, GATE_SCOPE, GATE_LEVEL, at, level, level != AlertLevel.GREEN, None,
                           f"gate {gate} {old.value} -> {level.value} ({cfg.metric} {value:g})")]
