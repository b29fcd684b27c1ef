"""Queue metrics per lane: who waits in the queue zone, who stands still, how fast it clears.

Expected wait is queue length / clearance rate (Little's law), which is what a driver at the
back of the queue wants to know and what operators compare against the gate's target.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from edge.stages.counting import Crossing, TrackState

#: clearance rate is measured over this much recent time
CLEARANCE_HORIZON_S = 300.0
#: below this much observed time the rate is too noisy to publish
CLEARANCE_MIN_S = 10.0


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    t: float
    length: int
    stationary: int
    clearance_per_min: float | None
    expected_wait_s: float | None


class QueueMonitor:
    def __init__(self, stationary_speed: float) -> None:
        self.stationary_speed = stationary_speed
        self._crossings: deque[float] = deque()
        self._started: float | None = None

    def update(self, t: float, present: list[TrackState], crossings: list[Crossing]) -> QueueSnapshot:
        if self._started is None:
            self._started = t
        for c in crossings:
            self._crossings.append(c.t)
        while self._crossings and self._crossings[0] < t - CLEARANCE_HORIZON_S:
            self._crossings.popleft()
        queued = [s for s in present if s.in_zone]
        stationary = sum(1 for s in queued if s.speed is not None and s.speed < self.stationary_speed)
        observed = min(t - self._started, CLEARANCE_HORIZON_S)
        rate: float | None = None
        expected: float | None = None
        if observed >= CLEARANCE_MIN_S:
            rate = len(self._crossings) / observed * 60.0
            if rate > 0:
                expected = len(queued) / (rate / 60.0)
            elif not queued:
                expected = 0.0
        return QueueSnapshot(t, len(queued), stationary, rate, expected)
