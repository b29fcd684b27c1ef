"""Aggregate per-frame lane results into per-lane records over wall-clock-aligned windows.

Windows are aligned to the wall clock (e.g. :00, :10, :20 s) rather than to process start,
so a record is keyed by (unit, lane, window_start) and a re-sent or replayed record lands on
exactly the same InfluxDB point.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from edge.stages.counting import Crossing
from edge.stages.queues import QueueSnapshot
from wire.payloads import QueueStats, VehicleClass, WindowRecord

#: a gap between frames longer than this counts as camera down time
MAX_FRAME_GAP_S = 2.0


def window_floor(t: float, window_s: float) -> float:
    return math.floor(t / window_s) * window_s


@dataclass(slots=True)
class _LaneWindow:
    counts: dict[VehicleClass, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    waits: list[float] = field(default_factory=list)
    length_max: int = 0
    stationary_max: int = 0
    length_area: float = 0.0  # sum(length * dt)
    last: QueueSnapshot | None = None


@dataclass(slots=True)
class _Window:
    start: float
    lanes: dict[str, _LaneWindow]
    frames: int = 0
    up: float = 0.0  # seconds with frames arriving


class WindowAggregator:
    """Feed it frames in time order; it returns records for every window that has closed.

    A window closes `lateness_s` after its end, because a crossing is only reported once its
    class has settled, a little after the vehicle crossed; it still belongs to the window in
    which it crossed.
    """

    def __init__(self, gate: str, unit: str, lanes: list[str], window_s: float, lateness_s: float = 0.0) -> None:
        self.gate, self.unit, self.lanes, self.window_s = gate, unit, lanes, window_s
        self.lateness_s = lateness_s
        self._windows: dict[float, _Window] = {}
        self._next: float | None = None  # start of the oldest window not yet emitted
        self._last_t: float | None = None
        self.late_crossings = 0

    def _window(self, t: float) -> _Window:
        start = max(window_floor(t, self.window_s), self._next if self._next is not None else -math.inf)
        w = self._windows.get(start)
        if w is None:
            w = self._windows[start] = _Window(start, {lane: _LaneWindow() for lane in self.lanes})
        return w

    def _spans(self, a: float, b: float) -> list[tuple[_Window, float]]:
        """Split the interval [a, b) over the open windows it overlaps."""
        out = []
        t = a
        while t < b:
            w = self._window(t)
            end = min(b, w.start + self.window_s)
            if end <= t:
                break
            out.append((w, end - t))
            t = end
        return out

    def add(self, t: float, crossings: list[Crossing], snapshots: dict[str, QueueSnapshot]) -> list[WindowRecord]:
        """Account one processed frame at time t (epoch seconds)."""
        if self._next is None:
            self._next = window_floor(t, self.window_s)
        spans: list[tuple[_Window, float]] = []
        if self._last_t is not None and 0 < t - self._last_t <= MAX_FRAME_GAP_S:
            spans = self._spans(max(self._last_t, self._next), t)
        for w, dt in spans:
            w.up += dt
        current = self._window(t)
        current.frames += 1
        self._last_t = t
        self.add_crossings(crossings)
        for lane, snap in snapshots.items():
            for w, dt in spans:
                w.lanes[lane].length_area += snap.length * dt
            lw = current.lanes[lane]
            lw.length_max = max(lw.length_max, snap.length)
            lw.stationary_max = max(lw.stationary_max, snap.stationary)
            lw.last = snap
        return self.advance(t)

    def add_crossings(self, crossings: list[Crossing]) -> None:
        """Put each crossing in the window in which it happened."""
        for c in crossings:
            if self._next is None:
                self._next = window_floor(c.t, self.window_s)
            if c.t < self._next:
                self.late_crossings += 1  # its window already went out; count it in the oldest open one
            lw = self._window(c.t).lanes[c.lane]
            lw.counts[c.vehicle_class][c.direction] += 1
            if c.wait_s is not None:
                lw.waits.append(c.wait_s)

    def advance(self, now: float) -> list[WindowRecord]:
        """Close every window that ended `lateness_s` before `now`. Empty windows still yield
        records, so a window with no vehicles reads as zero, not as missing data."""
        out: list[WindowRecord] = []
        while self._next is not None and now >= self._next + self.window_s + self.lateness_s:
            w = self._windows.pop(self._next, None) or _Window(self._next, {lane: _LaneWindow() for lane in self.lanes})
            out.extend(self._records(w))
            self._next += self.window_s
        return out

    def flush(self) -> list[WindowRecord]:
        """Emit the open windows, e.g. at the end of a replayed file."""
        out: list[WindowRecord] = []
        while self._windows and self._next is not None:
            w = self._windows.pop(self._next, None)
            if w is not None:
                out.extend(self._records(w))
            self._next += self.window_s
        self._next = None
        self._last_t = None
        return out

    def _records(self, w: _Window) -> list[WindowRecord]:
        start = datetime.fromtimestamp(w.start, UTC)
        out = []
        for lane in self.lanes:
            lw = w.lanes[lane]
            waits = np.asarray(lw.waits, dtype=np.float64)
            last = lw.last
            queue = QueueStats(
                length_max=lw.length_max,
                length_mean=round(lw.length_area / w.up, 3) if w.up > 0 else float(lw.length_max),
                stationary_max=lw.stationary_max,
                waits_n=len(waits),
                wait_p50_s=round(float(np.percentile(waits, 50)), 2) if len(waits) else None,
                wait_p90_s=round(float(np.percentile(waits, 90)), 2) if len(waits) else None,
                wait_max_s=round(float(waits.max()), 2) if len(waits) else None,
                clearance_per_min=round(last.clearance_per_min, 3)
                if last and last.clearance_per_min is not None
                else None,
                expected_wait_s=round(last.expected_wait_s, 1)
                if last and last.expected_wait_s is not None
                else None,
            )
            out.append(
                WindowRecord(
                    gate=self.gate,
                    unit=self.unit,
                    lane=lane,
                    window_start=start,
                    window_s=self.window_s,
                    counts={c: dict(d) for c, d in lw.counts.items()},
                    queue=queue,
                    frames=w.frames,
                    camera_up=round(min(1.0, w.up / self.window_s), 4),
                )
            )
        return out
