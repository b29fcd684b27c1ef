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

from edge.counting import Crossing
from edge.queues import QueueSnapshot
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


class WindowAggregator:
    """Feed it frames in time order; it returns records for every window that has closed."""

    def __init__(self, gate: str, unit: str, lanes: list[str], window_s: float) -> None:
        self.gate, self.unit, self.lanes, self.window_s = gate, unit, lanes, window_s
        self._start: float | None = None
        self._last_t: float | None = None
        self._frames = 0
        self._up = 0.0
        self._lanes: dict[str, _LaneWindow] = {}

    def _open(self, start: float) -> None:
        self._start = start
        self._frames = 0
        self._up = 0.0
        self._lanes = {lane: _LaneWindow() for lane in self.lanes}

    def add(
        self, t: float, crossings: list[Crossing], snapshots: dict[str, QueueSnapshot]
    ) -> list[WindowRecord]:
        """Account one processed frame at time t (epoch seconds)."""
        closed = self.advance(t)
        if self._start is None:
            self._open(window_floor(t, self.window_s))
        dt = 0.0
        if self._last_t is not None:
            gap = t - max(self._last_t, self._start or t)
            dt = gap if 0 < gap <= MAX_FRAME_GAP_S else 0.0
        self._up += dt
        self._frames += 1
        self._last_t = t
        for c in crossings:
            lw = self._lanes[c.lane]
            lw.counts[c.vehicle_class][c.direction] += 1
            if c.wait_s is not None:
                lw.waits.append(c.wait_s)
        for lane, snap in snapshots.items():
            lw = self._lanes[lane]
            lw.length_max = max(lw.length_max, snap.length)
            lw.stationary_max = max(lw.stationary_max, snap.stationary)
            lw.length_area += (lw.last.length if lw.last else snap.length) * dt
            lw.last = snap
        return closed

    def advance(self, now: float) -> list[WindowRecord]:
        """Close every window that ends at or before `now`; empty windows still yield records,
        so a window with no vehicles reads as zero, not as missing data."""
        out: list[WindowRecord] = []
        while self._start is not None and now >= self._start + self.window_s:
            end = self._start + self.window_s
            if self._last_t is not None and self._last_t < end and 0 < end - self._last_t <= MAX_FRAME_GAP_S:
                self._up += end - max(self._last_t, self._start)
                for lw in self._lanes.values():
                    if lw.last is not None:
                        lw.length_area += lw.last.length * (end - max(self._last_t, self._start))
            out.extend(self._records())
            self._open(end)
        return out

    def flush(self) -> list[WindowRecord]:
        """Emit the open (partial) window, e.g. at the end of a replayed file."""
        if self._start is None or self._frames == 0:
            return []
        out = self._records()
        self._start = None
        return out

    def _records(self) -> list[WindowRecord]:
        assert self._start is not None
        start = datetime.fromtimestamp(self._start, UTC)
        out = []
        for lane in self.lanes:
            lw = self._lanes[lane]
            waits = np.asarray(lw.waits, dtype=np.float64)
            last = lw.last
            queue = QueueStats(
                length_max=lw.length_max,
                length_mean=round(lw.length_area / self._up, 3) if self._up > 0 else float(lw.length_max),
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
                    frames=self._frames,
                    camera_up=round(min(1.0, self._up / self.window_s), 4),
                )
            )
        return out
