"""Line-crossing counts that survive stop-and-go traffic at a border gate.

A truck that creeps up to the line, stops on it and jitters back and forth must count once;
a tracker id switch right at the line must not add a second count. So:
- the reference point is the box's bottom-centre (on the road);
- a tolerance band around the line: only a full traverse from one side of the band to the
  other counts, and only if it happens within the line segment;
- each track counts at most once per line;
- a new id that appears near the line right where another track vanished takes over that
  track's state (side, counted flag, class votes, queue entry), so an id switch neither adds
  a count nor loses one;
- tracks unseen for `track_ttl_s` are pruned, so state stays bounded over days of running;
- each detection votes for a class through the lane's class policy (e.g. bus -> truck on a
  freight lane), and the crossing's class is the weighted majority of the track's votes;
- a crossing counts only if its track looks like a vehicle, not a ghost: seen over at least
  `min_track_s` and detected in at least `min_seen_share` of the processed frames of its life;
- a vehicle first seen with its box already across the line (a dark, monochrome or heavily
  compressed car is often detected only halfway over it) counts once it moves on away from the
  line, unless its box is another vehicle's (it overlaps a box of its frame, or the last box of a
  track that already counted) or counting has only just started (`born_across`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge.config import CountingConfig, LaneConfig
from edge.stages.detections import Detections, FloatArray
from edge.stages.geometry import LineGeometry, Zone
from wire.payloads import VehicleClass

#: how far past the segment ends a crossing still counts, as a share of the segment length
SEGMENT_MARGIN = 0.05
SPEED_SMOOTHING = 0.5
#: two boxes are one vehicle's when their intersection covers this share of the smaller one
SAME_VEHICLE_OVERLAP = 0.3
#: a vehicle already across the line when counting starts was not seen crossing: the first this
#: many seconds of a stream do not start across-the-line tracks (`CountingConfig.born_across`)
SETTLING_S = 1.0


Box = tuple[float, float, float, float]


def _box(xyxy: FloatArray) -> Box:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return x1, y1, x2, y2


def _same_vehicle(a: Box, b: Box) -> bool:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter > SAME_VEHICLE_OVERLAP * smaller


@dataclass(frozen=True, slots=True)
class Crossing:
    lane: str
    track_id: int
    vehicle_class: VehicleClass
    direction: str
    t: float
    wait_s: float | None


@dataclass(slots=True)
class TrackState:
    track_id: int
    first_seen: float
    last_seen: float
    x: float
    y: float
    side: int = 0  # last side seen beyond the band: +1 / -1, 0 = not yet
    counted: bool = False
    votes: dict[VehicleClass, float] = field(default_factory=dict)
    speed: float | None = None  # share of the frame diagonal per second, smoothed
    vx: float = 0.0  # px/s, smoothed: to predict where a lost track has got to
    vy: float = 0.0
    zone_enter: float | None = None
    in_zone: bool = False
    pending: Crossing | None = None  # counted, class not yet settled
    born_at: float | None = None  # signed distance to the line when first seen inside the band or across it
    born_across: bool = False  # first box lay across the line with its reference point beyond the band
    box: Box = (0.0, 0.0, 0.0, 0.0)  # latest box, px
    first_frame: int = 0  # processed-frame numbers (the counter's own): how often it was seen while alive
    last_frame: int = 0
    seen: int = 0

    def vote(self, cls: VehicleClass, weight: float) -> None:
        self.votes[cls] = self.votes.get(cls, 0.0) + weight

    @property
    def vehicle_class(self) -> VehicleClass:
        """Weighted majority over the track's life: a truck seen as 'car' in one frame stays a
        truck. Votes weigh confidence times box area, because a vehicle close to the camera
        (many pixels) is classified far more reliably than the same vehicle far away."""
        return max(self.votes.items(), key=lambda kv: kv[1])[0] if self.votes else VehicleClass.CAR


class LaneCounter:
    """Counts crossings of one lane's line and tracks who is in its queue zone."""

    def __init__(self, lane: LaneConfig, counting: CountingConfig, width: int, height: int) -> None:
        self.lane = lane
        self.cfg = counting
        self.line = LineGeometry.from_config(lane.line, width, height)
        self.zone = Zone(lane.queue_zone, width, height) if lane.queue_zone else None
        self.tracks: dict[int, TrackState] = {}
        self._guard_px = counting.id_switch_guard_dist * self.line.diag
        self._frame = 0  # processed frames so far: the denominator of a track's seen share
        self._t0: float | None = None  # time of the first processed frame
        self.ghosts = 0  # crossings dropped as ghost tracks (`_is_ghost`), for debugging and tests

    def update(self, dets: Detections, t: float) -> list[Crossing]:
        self._frame += 1
        if self._t0 is None:
            self._t0 = t
        points = dets.reference_points()
        seen = {int(i) for i in dets.track_id}
        new: list[int] = []
        for k, tid in enumerate(int(i) for i in dets.track_id):
            if tid in self.tracks:
                self._observe(self.tracks[tid], dets, k, points, t)
            else:
                new.append(k)
        # new ids after known ones, so "vanished this frame" is known when matching
        for k in new:
            tid = int(dets.track_id[k])
            x, y = float(points[k][0]), float(points[k][1])
            state = self._inherit(tid, x, y, t, seen) or self._new_track(tid, x, y, t, dets, k)
            self.tracks[tid] = state
            self._observe(state, dets, k, points, t)
        crossings = self._settle(t)
        self._prune(t)
        return crossings

    def _settle(self, t: float, force: bool = False) -> list[Crossing]:
        """Emit counted crossings once their class has settled.

        A pickup seen head-on scores 'car' until it is close; the class is taken from the
        whole track, `class_settle_s` after the crossing, so the count is not frozen with
        the first impression. The crossing keeps its own time for windowing.
        """
        out = []
        for s in self.tracks.values():
            p = s.pending
            if p is not None and (force or t - p.t >= self.cfg.class_settle_s):
                if self._is_ghost(s):
                    self.ghosts += 1
                else:
                    out.append(Crossing(p.lane, s.track_id, s.vehicle_class, p.direction, p.t, p.wait_s))
                s.pending = None
        return sorted(out, key=lambda c: c.t)

    def _is_ghost(self, s: TrackState) -> bool:
        """A track that crossed but is not a vehicle, judged when its crossing settles.

        Heavy JPEG on a small frame makes weak boxes behind and beside real vehicles (blocks, a
        car's previous position); now and then one is confident enough to start a track, and the
        tracker's lost-track buffer then carries it across the line on its prediction with only a
        few, scattered detections (bgslibrary at JPEG quality 18: 32 of 28±1). A vehicle is seen
        for longer than a few tenths of a second and in most frames while it is in view. The share
        is over processed frames, so it means the same at 5 frames/s as at 30. The track keeps its
        counted flag either way: a ghost dropped here cannot count later.
        """
        life = s.last_seen - s.first_seen
        share = s.seen / max(1, s.last_frame - s.first_frame + 1)
        return life < self.cfg.min_track_s or share < self.cfg.min_seen_share

    def flush(self) -> list[Crossing]:
        """Crossings still settling, e.g. at the end of a replayed file."""
        return self._settle(0.0, force=True)

    def _new_track(self, tid: int, x: float, y: float, t: float, dets: Detections, k: int) -> TrackState:
        state = TrackState(tid, t, t, x, y, first_frame=self._frame, last_frame=self._frame)
        d = self.line.signed_distance(x, y)
        if abs(d) <= self.line.band:
            state.born_at = d  # first seen on the line: at stream start, or out from behind another vehicle
        elif self.cfg.born_across and self._settled(t) and self._across(dets, k, d):
            state.born_at, state.born_across = d, True
        return state

    def _settled(self, t: float) -> bool:
        return self._t0 is not None and t - self._t0 >= SETTLING_S

    def _across(self, dets: Detections, k: int, d: float) -> bool:
        """The box reaches back over the line from the side its reference point is on, and is a
        vehicle of its own: not a box around two tracked vehicles side by side, nor a second box
        on one (both overlap another box of the frame), nor a vehicle that already counted under
        an id the tracker has just dropped (its box jumped, or it stood there unseen)."""
        box = _box(dets.xyxy[k])
        corners = [self.line.signed_distance(cx, cy) for cx in (box[0], box[2]) for cy in (box[1], box[3])]
        if not (min(corners) < 0 if d > 0 else max(corners) > 0):
            return False
        if any(_same_vehicle(box, _box(dets.xyxy[j])) for j in range(len(dets)) if j != k):
            return False
        return not any(old.counted and _same_vehicle(box, old.box) for old in self.tracks.values())

    def _inherit(self, tid: int, x: float, y: float, t: float, seen: set[int]) -> TrackState | None:
        """Id-switch guard: take over the state of a track that vanished within the guard time
        and whose motion-predicted position is where the new id appeared.

        Prediction matters for moving traffic (a weakly detected car can vanish for half a
        second and reappear 100 px on, past the line); for stopped trucks the prediction is
        simply where they stood.
        """
        if self.cfg.id_switch_guard_s <= 0:
            return None
        best: TrackState | None = None
        best_d = self._guard_px
        for old in self.tracks.values():
            gap = t - old.last_seen
            if old.track_id in seen or gap > self.cfg.id_switch_guard_s:
                continue
            # it may have kept going or stopped while unseen: accept either
            moved = math.hypot(old.x + old.vx * gap - x, old.y + old.vy * gap - y)
            d = min(moved, math.hypot(old.x - x, old.y - y))
            if d <= best_d:
                best, best_d = old, d
        if best is None:
            return None
        del self.tracks[best.track_id]
        best.track_id = tid
        return best

    def _observe(self, s: TrackState, dets: Detections, k: int, points: FloatArray, t: float) -> None:
        x, y = float(points[k][0]), float(points[k][1])
        dt = t - s.last_seen
        if dt > 0:
            vx, vy = (x - s.x) / dt, (y - s.y) / dt
            v = math.hypot(vx, vy) / self.line.diag
            first = s.speed is None
            a = 1.0 if first else SPEED_SMOOTHING
            s.speed = v if s.speed is None else a * v + (1 - a) * s.speed
            s.vx, s.vy = a * vx + (1 - a) * s.vx, a * vy + (1 - a) * s.vy
        s.x, s.y, s.last_seen = x, y, t
        s.seen += 1
        s.last_frame = self._frame
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[k])
        s.box = (x1, y1, x2, y2)
        w, h = max(0.0, x2 - x1), max(0.0, y2 - y1)
        along, across = self.line.travel_extents(w, h)
        cls = self.lane.classes.vote_class(dets.vehicle_class[k], along, across)
        s.vote(cls, float(dets.confidence[k]) * w * h / (self.line.diag**2))
        if self.zone is not None:
            s.in_zone = self.zone.contains(x, y)
            if s.in_zone and s.zone_enter is None and not s.counted:
                s.zone_enter = t
        side = self.line.side(x, y)
        if side == 0:
            return
        from_side = s.side
        if from_side == 0 and s.born_across and s.born_at is not None:
            # first seen across the line: it crossed if it goes on away from the line, not if it
            # turns out to be coming towards it (then it counts when it crosses, as any track)
            born_side = 1 if s.born_at > 0 else -1
            moved_away = (self.line.signed_distance(x, y) - s.born_at) * born_side
            if moved_away >= self.line.band:
                from_side = -side
            elif moved_away <= -self.line.band:
                s.born_across = False
                from_side = born_side
            else:
                return
        # first seen inside the band: it crossed if it moved a band-width through the line
        if (
            from_side == 0
            and s.born_at is not None
            and abs(self.line.signed_distance(x, y) - s.born_at) >= self.line.band
        ):
            from_side = -side
        if from_side == -side and not s.counted and -SEGMENT_MARGIN <= self.line.along(x, y) <= 1 + SEGMENT_MARGIN:
            s.counted = True
            direction = self.lane.directions[0] if side > 0 else self.lane.directions[1]
            wait = t - s.zone_enter if s.zone_enter is not None else None
            s.pending = Crossing(self.lane.id, s.track_id, s.vehicle_class, direction, t, wait)
            s.in_zone = False
        s.side = side

    def _prune(self, t: float) -> None:
        ttl = max(self.cfg.track_ttl_s, self.cfg.id_switch_guard_s, self.cfg.class_settle_s)
        for tid in [tid for tid, s in self.tracks.items() if t - s.last_seen > ttl]:
            del self.tracks[tid]

    def present(self, t: float) -> list[TrackState]:
        """Tracks seen in the latest frame."""
        return [s for s in self.tracks.values() if s.last_seen == t]
