"""Counting logic on parametrized synthetic track sequences (no model involved)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from edge.config import ClassPolicy, CountingConfig, LaneConfig, LineConfig
from edge.stages.counting import LaneCounter
from edge.stages.detections import Detections
from tests.edge.tracks import SIZE, Obs, frame, merge, path
from wire.payloads import VehicleClass

FPS = 10.0
LINE_Y = 500  # horizontal line across the middle; band = 0.03 * diag = 42 px


def lane(**line_kw: object) -> LaneConfig:
    kw: dict[str, object] = {"a": (0.0, 0.5), "b": (1.0, 0.5), "band": 0.03} | line_kw
    return LaneConfig(id="l1", line=LineConfig(**kw), directions=("down", "up"))


def run(frames: Sequence[Sequence[Obs]], lane_cfg: LaneConfig | None = None) -> list[tuple[str, str]]:
    counter = LaneCounter(lane_cfg or lane(band=0.03), CountingConfig(), *SIZE)
    crossings = []
    for i, obs in enumerate(frames):
        crossings += counter.update(frame(obs), i / FPS)
    crossings += counter.flush()  # the end of the clip settles the rest
    return [(c.direction, c.vehicle_class.value) for c in crossings]


def ramp(a: float, b: float, step: float = 20.0) -> list[float]:
    return list(np.arange(a, b + (step if b > a else -step) / 2, step if b > a else -step))


def jitter(center: float, amp: float, n: int) -> list[float]:
    return [center + (amp if i % 2 else -amp) for i in range(n)]


# id switch at the line: track 1 vanishes just before the line, track 2 appears just past it
SWITCH = path(1, ramp(300, 490)) + path(2, ramp(510, 700))
# id switch after counting: track 1 crosses (counted), vanishes; track 2 appears where it was
SWITCH_AFTER = path(1, ramp(300, 560)) + path(2, ramp(570, 700))
# the new id appears after a pause (a stopped truck re-detected) at the same place
SWITCH_PAUSED = path(1, ramp(300, 480)) + [[] for _ in range(5)] + path(2, [485] * 20 + ramp(500, 700))

CASES = {
    "clean crossing": (path(1, ramp(300, 700)), [("down", "car")]),
    "clean crossing up": (path(1, ramp(700, 300)), [("up", "car")]),
    "stop on the line and jitter": (
        path(1, ramp(300, 480) + jitter(500, 35, 200) + ramp(500, 700)),
        [("down", "car")],
    ),
    "stop on the line, jitter, then back off": (path(1, ramp(300, 480) + jitter(500, 35, 100) + ramp(480, 300)), []),
    "reverse after crossing counts once": (
        path(1, ramp(300, 700) + ramp(700, 300) + ramp(300, 700)),
        [("down", "car")],
    ),
    "approach and reverse": (path(1, ramp(300, 480) + ramp(480, 300)), []),
    "id switch at the line": (SWITCH, [("down", "car")]),
    "id switch after the count": (SWITCH_AFTER, [("down", "car")]),
    "id switch while stopped": (SWITCH_PAUSED, [("down", "car")]),
    "two vehicles side by side": (
        merge(path(1, ramp(300, 700), x=300), path(2, ramp(300, 700), x=420)),
        [("down", "car"), ("down", "car")],
    ),
    "leaves the frame mid-line": (path(1, ramp(300, 500)), []),
    "appears past the line": (path(1, ramp(560, 900)), []),
    "truck seen once as car": (
        [[(1, 500, y, VehicleClass.CAR if i == 3 else VehicleClass.TRUCK)] for i, y in enumerate(ramp(300, 700))],
        [("down", "truck")],
    ),
}


@pytest.mark.parametrize("frames, expected", list(CASES.values()), ids=list(CASES))
def test_counts(frames: list[list[Obs]], expected: list[tuple[str, str]]) -> None:
    assert sorted(run(frames)) == sorted(expected)


def test_follower_is_not_swallowed_by_the_guard() -> None:
    """A second vehicle entering where the first left, well after the guard time, counts."""
    frames = path(1, ramp(300, 700)) + [[] for _ in range(30)] + path(2, ramp(300, 700))
    assert run(frames) == [("down", "car"), ("down", "car")]


def test_class_settles_after_the_crossing() -> None:
    """A pickup scored 'car' while far away and 'truck' once close counts as a truck."""
    ys = ramp(300, 700)
    # car for 9 frames, truck after: still "car" by majority when it crosses (y > 521), truck 1 s later
    frames = [[(1, 500, y, VehicleClass.CAR if y <= 460 else VehicleClass.TRUCK)] for y in ys]
    assert run(frames) == [("down", "truck")]


def test_crossing_is_reported_once_the_class_settles() -> None:
    counter = LaneCounter(lane(), CountingConfig(class_settle_s=1.0), *SIZE)
    reported = []
    for i, y in enumerate(ramp(300, 900, 10)):
        reported += [(i / FPS, c.t) for c in counter.update(frame([(1, 500, y)]), i / FPS)]
    assert len(reported) == 1
    at, crossed = reported[0]
    assert at - crossed == pytest.approx(1.0)


def test_crossing_outside_the_segment_does_not_count() -> None:
    short = lane(a=(0.0, 0.5), b=(0.4, 0.5), band=0.03)
    assert run(path(1, ramp(300, 700), x=800), short) == []
    assert run(path(1, ramp(300, 700), x=200), short) == [("down", "car")]


def test_vertical_line_directions() -> None:
    # a->b drawn top to bottom: the first direction is motion to the left on screen
    vertical = LaneConfig(id="l1", line=LineConfig(a=(0.5, 0.0), b=(0.5, 1.0), band=0.03), directions=("left", "right"))
    counter = LaneCounter(vertical, CountingConfig(), *SIZE)
    got = []
    for i, x in enumerate(ramp(300, 700)):
        got += [c.direction for c in counter.update(frame([(1, x, 500)]), i / FPS)]
    got += [c.direction for c in counter.flush()]
    assert got == ["right"]


def test_wait_from_queue_zone_entry_to_crossing() -> None:
    cfg = LaneConfig(
        id="l1",
        line=LineConfig(a=(0.0, 0.5), b=(1.0, 0.5), band=0.03),
        directions=("down", "up"),
        queue_zone=[(0.0, 0.2), (1.0, 0.2), (1.0, 0.5), (0.0, 0.5)],
    )
    counter = LaneCounter(cfg, CountingConfig(), *SIZE)
    ys = ramp(105, 305) + [305] * 50 + ramp(305, 705)  # enters the zone past y=200, waits 5 s, crosses
    crossings = []
    for i, y in enumerate(ys):
        crossings += counter.update(frame([(1, 500, y)]), i / FPS)
    crossings += counter.flush()
    assert len(crossings) == 1
    wait = crossings[0].wait_s
    assert wait is not None
    # zone entered at the frame where y first exceeds 200 (y=200+), crossed beyond the band (y>542)
    first_in = next(i for i, y in enumerate(ys) if y > 200) / FPS
    first_past = next(i for i, y in enumerate(ys) if y > LINE_Y + 0.03 * np.hypot(*SIZE)) / FPS
    assert wait == pytest.approx(first_past - first_in)


def test_state_stays_bounded_over_a_simulated_day() -> None:
    """24 h at 1 frame/s with a steady stream of vehicles: track state never grows."""
    counter = LaneCounter(lane(), CountingConfig(track_ttl_s=3.0), *SIZE)
    next_id, active, total, peak = 0, {}, 0, 0
    for second in range(24 * 3600):
        if second % 4 == 0:  # a new vehicle every 4 s, 20 s in view
            active[next_id] = second
            next_id += 1
        obs = []
        for tid, born in list(active.items()):
            age = second - born
            if age > 20:
                del active[tid]
                continue
            obs.append((tid, 100 + 40 * (tid % 5), 100 + age * 40))
        total += len(counter.update(frame(obs), float(second)))
        peak = max(peak, len(counter.tracks))
    total += len(counter.flush())
    end = 24 * 3600 - 1
    crossed = sum(1 for born in range(0, 24 * 3600, 4) if end - born >= 12)  # past the band 12 s after entry
    assert total == crossed
    assert peak <= 10, f"track state grew to {peak}"
    assert len(counter.tracks) <= 10


@pytest.mark.parametrize(
    "ys, expected",
    [
        (ramp(490, 700), [("down", "car")]),  # on the line in the first frame, drives on
        (ramp(530, 700), []),  # born near the band edge, barely moves through: not a traverse
        ([500.0] * 30, []),  # parked on the line
    ],
    ids=["crossing at stream start", "born at the band edge", "parked on the line"],
)
def test_track_first_seen_on_the_line(ys: list[float], expected: list[tuple[str, str]]) -> None:
    assert run(path(1, ys)) == expected


def _classes_of(
    frames: Sequence[Sequence[Obs]], policy: ClassPolicy, box: tuple[float, float] | None = None
) -> list[str]:
    cfg = lane(band=0.03).model_copy(update={"classes": policy})
    counter = LaneCounter(cfg, CountingConfig(), *SIZE)
    got = []
    for i, obs in enumerate(frames):
        got += counter.update(frame(obs, box=box), i / FPS)
    got += counter.flush()
    return [c.vehicle_class.value for c in got]


# a semi scored 'bus' in 6 frames of 10 and 'truck' in the rest
SEMI = [[(1, 500, y, VehicleClass.BUS if i % 5 < 3 else VehicleClass.TRUCK)] for i, y in enumerate(ramp(300, 700))]


@pytest.mark.parametrize(
    "policy, expected",
    [
        (ClassPolicy(), ["bus"]),  # no policy: the model's majority
        (ClassPolicy(relabel={VehicleClass.BUS: VehicleClass.TRUCK}), ["truck"]),  # freight lane: no buses
    ],
    ids=["model's majority", "bus relabelled truck"],
)
def test_class_policy_relabels_before_the_vote(policy: ClassPolicy, expected: list[str]) -> None:
    assert _classes_of(SEMI, policy) == expected


@pytest.mark.parametrize(
    "box, ratio, expected",
    [
        ((80, 60), 1.8, ["car"]),  # a car-sized box: 60 px along travel, 80 across
        ((80, 200), 1.8, ["truck"]),  # 2.5 times longer along travel than across: a truck
        ((80, 200), None, ["car"]),  # the rule is off unless configured
    ],
    ids=["short box", "long box", "rule off"],
)
def test_long_box_votes_truck(box: tuple[float, float], ratio: float | None, expected: list[str]) -> None:
    frames = path(1, ramp(300, 700), cls=VehicleClass.CAR)
    assert _classes_of(frames, ClassPolicy(long_box_ratio=ratio), box) == expected


def test_class_policy_rejects_a_typo() -> None:
    with pytest.raises(ValidationError):
        ClassPolicy.model_validate({"relabel": {"bus": "lorry"}})
    with pytest.raises(ValidationError):
        ClassPolicy.model_validate({"long_box": 2.0})


def _seen_every(k: int, frames: list[list[Obs]]) -> list[list[Obs]]:
    """The same track detected only in every k-th processed frame (a flickering box)."""
    return [obs if i % k == 0 else [] for i, obs in enumerate(frames)]


def _count_at(frames: Sequence[Sequence[Obs]], fps: float, counting: CountingConfig | None = None) -> int:
    counter = LaneCounter(lane(band=0.03), counting or CountingConfig(), *SIZE)
    got = []
    for i, obs in enumerate(frames):
        got += counter.update(frame(obs), i / fps)
    got += counter.flush()
    return len(got)


@pytest.mark.parametrize(
    "frames, fps, expected",
    [
        (path(1, ramp(300, 700)), 10.0, 1),  # seen in every frame for 2 s
        (_seen_every(2, path(1, ramp(300, 700))), 10.0, 1),  # every other frame: a weakly detected car
        (_seen_every(3, path(1, ramp(300, 700))), 10.0, 1),  # every third frame: still a vehicle
        (_seen_every(5, path(1, ramp(300, 700, 10.0))), 10.0, 0),  # 1 frame in 5 across the line: a ghost
        (path(1, ramp(400, 560, 40.0)), 10.0, 1),  # fast: across in 0.4 s, seen every frame
        (path(1, ramp(440, 560, 40.0)), 10.0, 0),  # seen for 0.3 s: a ghost
        (path(1, ramp(200, 800, 200.0)), 5.0, 1),  # 5 frames/s, seen in its 4 processed frames over 0.6 s
        (path(1, ramp(400, 600, 200.0)), 5.0, 0),  # 5 frames/s, two frames 0.2 s apart: too short to tell
    ],
    ids=["every frame", "every 2nd frame", "every 3rd frame", "every 5th frame", "fast, 0.4 s", "brief, 0.3 s",
         "5 fps, 0.6 s", "5 fps, 0.2 s"],
)
def test_ghost_tracks_do_not_count(frames: list[list[Obs]], fps: float, expected: int) -> None:
    assert _count_at(frames, fps) == expected


@pytest.mark.parametrize("frames", [_seen_every(5, path(1, ramp(300, 700, 10.0))), path(1, ramp(440, 560, 40.0))],
                         ids=["flickering", "brief"])
def test_ghost_rule_can_be_switched_off(frames: list[list[Obs]]) -> None:
    assert _count_at(frames, 10.0, CountingConfig(min_track_s=0, min_seen_share=0)) == 1


def test_a_ghost_dropped_at_settle_never_counts_later() -> None:
    """The flickering track is dropped when its crossing settles; densely seen afterwards (it is the same
    box id), it still cannot count again: one crossing per track, counted or dropped."""
    ghost = _seen_every(5, path(1, ramp(300, 700, 10.0)))
    then = path(1, ramp(700, 300)) + path(1, ramp(300, 700))
    counter = LaneCounter(lane(band=0.03), CountingConfig(), *SIZE)
    got = []
    for i, obs in enumerate(ghost + then):
        got += counter.update(frame(obs), i / 10.0)
    got += counter.flush()
    assert got == [] and counter.ghosts == 1


# First seen across the line: a weakly seen vehicle (night, monochrome camera, heavy compression) is
# often detected only when it is already halfway over the line. Boxes 80 x 100 px: a box whose
# reference point (bottom-centre) is at y=560, 60 px past the line and beyond the 42 px band, reaches
# back to y=460, over the line.
TALL = (80.0, 100.0)
EMPTY_ROAD: list[list[Obs]] = [[] for _ in range(15)]  # 1.5 s with nothing on the road: counting has settled


def _count_boxes(frames: Sequence[Sequence[Obs]], counting: CountingConfig | None = None,
                 box: tuple[float, float] = TALL, extra: dict[int, tuple[float, float, float, float, int]] | None = None
                 ) -> list[tuple[str, str]]:
    """Like `run`, with tall boxes; `extra` adds, per frame index, one more box (x1, y1, x2, y2, id)."""
    counter = LaneCounter(lane(band=0.03), counting or CountingConfig(), *SIZE)
    got = []
    for i, obs in enumerate(frames):
        dets = frame(obs, box=box)
        if extra and i in extra:
            x1, y1, x2, y2, tid = extra[i]
            dets = Detections.from_lists([*map(tuple, dets.xyxy.tolist()), (x1, y1, x2, y2)],
                                         [*map(int, dets.track_id), int(tid)],
                                         [*dets.vehicle_class, VehicleClass.CAR],
                                         [*map(float, dets.confidence), 0.9], SIZE)
        got += counter.update(dets, i / FPS)
    got += counter.flush()
    return [(c.direction, c.vehicle_class.value) for c in got]


@pytest.mark.parametrize(
    "frames, expected",
    [
        (EMPTY_ROAD + path(1, ramp(560, 900)), [("down", "car")]),
        (EMPTY_ROAD + path(1, ramp(560, 300)), [("up", "car")]),
        (path(1, ramp(560, 900)), []),
        (EMPTY_ROAD + path(1, [560.0] * 30), []),
        (EMPTY_ROAD + path(1, ramp(560, 900), x=60.0) + [[]] * 5 + path(2, ramp(560, 900), x=60.0),
         [("down", "car")] * 2),
        (EMPTY_ROAD + path(1, ramp(300, 560)) + [[] for _ in range(20)] + path(2, [570.0] * 5 + ramp(590, 900)),
         [("down", "car")]),
        (EMPTY_ROAD + path(1, ramp(600, 900)), []),
        (EMPTY_ROAD + path(1, ramp(595, 535, 15.0) + ramp(535, 900)), []),
    ],
    ids=["drives on: counts", "comes towards the line: counts once, when it crosses", "at stream start: not seen "
         "crossing", "parked across the line", "two vehicles, one after the other", "counted, stood unseen for 2 s, "
         "seen again under a new id: once", "whole box past the line: not across",
         "across, heading for the line, turns back: no count"],
)
def test_vehicle_first_seen_across_the_line(frames: list[list[Obs]], expected: list[tuple[str, str]]) -> None:
    assert sorted(_count_boxes(frames)) == sorted(expected)


def test_first_seen_across_the_line_can_be_switched_off() -> None:
    assert _count_boxes(EMPTY_ROAD + path(1, ramp(560, 900)), CountingConfig(born_across=False)) == []


@pytest.mark.parametrize("first", [11, 14], ids=["while they cross", "after they counted"])
def test_a_box_around_two_tracked_vehicles_does_not_count(first: int) -> None:
    """Two cars side by side cross the line, and the detector also puts one box around both, 40 px
    lower (a new id, its reference point past the band, its top over the line). Only the two cars count:
    the wrapper overlaps boxes of its own frame, and later the boxes of tracks that counted."""
    pair = merge(path(1, ramp(300, 900), x=400.0), path(2, ramp(300, 900), x=520.0))
    start = len(EMPTY_ROAD) + first  # the cars at y = 520 (in the band) or 580 (counted)
    y0 = 300.0 + 20 * first
    extra = {start + i: (340.0, y0 - 80 + 20 * i, 580.0, y0 + 40 + 20 * i, 9) for i in range(12)}
    assert _count_boxes(EMPTY_ROAD + pair, extra=extra) == [("down", "car"), ("down", "car")]
