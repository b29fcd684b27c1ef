"""The cross-gate view: each gate summarised from its lanes, and the gates ranked for the next truck.

Seven gates share one border, and a dispatcher's question is which one to send the next truck to.
Every `summary.interval_s` the server sums up each gate from the window records it has already
validated (nothing is queried back from the database), over a trailing `summary.window_s`:

- **trucks arriving / cleared per hour**: truck crossings in the gate's *arriving* and *cleared*
  directions (`summary.directions`, per gate in `summary.gates`: which way a lane's line is crossed
  says whether a truck reached the gate or got through it). Each lane's rate is its crossings over
  the time its own windows cover, so a lane that was down part of the time is not diluted; the
  gate's rate is the sum over its lanes.
- **vehicles queued**: the time-weighted mean queue (`length_mean`) of each lane's latest window,
  summed over the lanes that are *reporting* (latest window ended at most `stale_s` before).
- **expected wait**: vehicles queued / vehicles cleared per second by the reporting lanes
  (Little's law over the gate, as the edge does per lane). Trucks queue behind cars in the same
  lanes, so every vehicle counts. Zero with no queue; unknown (null) with a queue and nothing
  clearing, which is worse than any known wait.

Time is the records' own, as in the alert engine: the summary's time is the latest window end
seen, floored to `interval_s`, and only windows that ended by then are in it. So replaying the
same records gives the same summaries, and re-computing a bucket when a late record arrives
overwrites the same InfluxDB point (keyed by gate and that time) with the fuller figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from server.config import DirectionRoles, SummaryConfig
from wire.payloads import VehicleClass, WindowRecord
from wire.summary import GateSummary, ProvinceSummary, RankedGate


@dataclass(frozen=True, slots=True)
class _Window:
    start: datetime
    end: datetime
    seconds: float
    trucks_arriving: int
    trucks_cleared: int
    vehicles_cleared: int
    queue: float


@dataclass
class _Lane:
    #: the gate's arriving and cleared directions (`summary.directions`), looked up once per lane
    arriving: frozenset[str]
    cleared: frozenset[str]
    #: by window start, in time order; a dict so a re-delivered window replaces its copy in O(1) and
    #: the oldest leave from the front: the server calls `on_record` for every record it stores
    windows: dict[datetime, _Window] = field(default_factory=dict)


class GateSummaries:
    """Keeps each lane's recent windows; `summarize` answers for a time."""

    def __init__(self, config: SummaryConfig) -> None:
        self.config = config
        self._lanes: dict[tuple[str, str], _Lane] = {}
        #: the latest window end seen: the stream's time
        self.now: datetime | None = None
        #: how far back a lane's windows are kept: a summary's window and one interval
        self._kept = timedelta(seconds=config.window_s + config.interval_s)

    def on_record(self, record: WindowRecord) -> None:
        key = (record.gate, record.lane)
        lane = self._lanes.get(key)
        if lane is None:
            roles = self.config.roles(record.gate)
            lane = self._lanes[key] = _Lane(frozenset(roles.arriving), frozenset(roles.cleared))
        end = record.window_start + timedelta(seconds=record.window_s)
        trucks_arriving = trucks_cleared = vehicles_cleared = 0
        for cls, dirs in record.counts.items():  # one pass: this runs for every record stored
            for d, n in dirs.items():
                if d in lane.cleared:
                    vehicles_cleared += n
                    if cls == VehicleClass.TRUCK:
                        trucks_cleared += n
                if cls == VehicleClass.TRUCK and d in lane.arriving:
                    trucks_arriving += n
        w = _Window(
            start=record.window_start, end=end, seconds=record.window_s, trucks_arriving=trucks_arriving,
            trucks_cleared=trucks_cleared, vehicles_cleared=vehicles_cleared, queue=record.queue.length_mean,
        )
        wins = lane.windows
        newest = next(reversed(wins), None)
        wins[w.start] = w  # a re-delivered window replaces its copy where it stands
        if newest is not None and w.start < newest and len(wins) > 1:
            lane.windows = wins = dict(sorted(wins.items()))  # a late window: back into time order
        horizon = end - self._kept
        while len(wins) > 1:  # the oldest leave once past the horizon; the newest always stays
            oldest = next(iter(wins.values()))
            if oldest.end > horizon:
                break
            del wins[oldest.start]
        if self.now is None or end > self.now:
            self.now = end

    def bucket(self) -> datetime | None:
        """The summary time now: the stream's time floored to `interval_s`."""
        if self.now is None:
            return None
        step = self.config.interval_s
        return datetime.fromtimestamp(math.floor(self.now.timestamp() / step) * step, UTC)

    def summarize(self, at: datetime) -> tuple[list[GateSummary], ProvinceSummary]:
        cfg = self.config
        since = at - timedelta(seconds=cfg.window_s)
        fresh_after = at - timedelta(seconds=cfg.stale_s)
        totals: dict[str, dict[str, float]] = {}
        for (gate, _lane), lane in sorted(self._lanes.items()):
            seen = [w for w in lane.windows.values() if since < w.end <= at]
            if not seen:
                continue
            g = totals.setdefault(gate, dict.fromkeys(
                ("lanes", "reporting", "arriving", "cleared", "vehicles", "queued", "clearing"), 0.0))
            covered = sum(w.seconds for w in seen)
            per_h = 3600.0 / covered
            g["lanes"] += 1
            g["arriving"] += sum(w.trucks_arriving for w in seen) * per_h
            g["cleared"] += sum(w.trucks_cleared for w in seen) * per_h
            vehicles_per_h = sum(w.vehicles_cleared for w in seen) * per_h
            g["vehicles"] += vehicles_per_h
            if seen[-1].end > fresh_after:
                g["reporting"] += 1
                g["queued"] += seen[-1].queue
                g["clearing"] += vehicles_per_h
        gates = [self._gate(gate, at, t) for gate, t in sorted(totals.items())]
        ranking = rank(gates)
        ranks = {r.gate: r.rank for r in ranking}
        gates = [g.model_copy(update={"rank": ranks.get(g.gate)}) for g in gates]
        best = ranking[0].gate if ranking and ranking[0].expected_wait_s is not None else None
        return gates, ProvinceSummary(at=at, window_s=cfg.window_s, ranking=ranking, best_gate=best)

    def _gate(self, gate: str, at: datetime, t: dict[str, float]) -> GateSummary:
        queued, clearing = t["queued"], t["clearing"]
        if queued <= 0:
            wait: float | None = 0.0
        elif clearing > 0:
            wait = queued / (clearing / 3600.0)
        else:
            wait = None
        return GateSummary(
            gate=gate, at=at, window_s=self.config.window_s, lanes=int(t["lanes"]),
            lanes_reporting=int(t["reporting"]), trucks_arriving_per_h=round(t["arriving"], 3),
            trucks_cleared_per_h=round(t["cleared"], 3), vehicles_cleared_per_h=round(t["vehicles"], 3),
            vehicles_queued=round(queued, 3), expected_wait_s=None if wait is None else round(wait, 1),
        )


def rank(gates: list[GateSummary]) -> list[RankedGate]:
    """Gates with a reporting lane, best first (see `ProvinceSummary`)."""
    live = [g for g in gates if g.lanes_reporting > 0]
    live.sort(key=lambda g: (g.expected_wait_s is None, g.expected_wait_s or 0.0, -g.trucks_cleared_per_h, g.gate))
    return [RankedGate(gate=g.gate, rank=i, expected_wait_s=g.expected_wait_s,
                       trucks_cleared_per_h=g.trucks_cleared_per_h, vehicles_queued=g.vehicles_queued)
            for i, g in enumerate(live, start=1)]


__all__ = ["DirectionRoles", "GateSummaries", "rank"]
