"""The default tracker stage (gate_rf_bytetrack.yaml, roboflow's ByteTrack fed each frame's time) and
the counting rules at the rates a Pi really processes: boxes that move far between processed frames,
and stop-and-go, on hand-made box sequences (no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.config import CountingConfig, LaneConfig, LineConfig
from edge.stages.counting import LaneCounter
from edge.stages.detections import Boxes, drop_nested
from edge.stages.runtimes import open_box_tracker
from edge.stages.tracker_roboflow import StepBufferedIoU
from edge.stages.tracking import TRACKERS_DIR
from wire.payloads import VehicleClass

W, H = 1000, 1000
FRAME = np.zeros((H, W, 3), np.uint8)
LANE = LaneConfig(id="l1", line=LineConfig(a=(0.0, 0.5), b=(1.0, 0.5)), directions=("down", "up"))
CAR_W, CAR_H = 80.0, 60.0

# one frame: boxes as (x centre, bottom y) or (x centre, bottom y, width, height, confidence)
Box = tuple[float, ...]


def counts(frames: list[list[Box]], fps: float, tracker: str = "gate_rf_bytetrack.yaml") -> list[str]:
    """Directions counted when `frames` are processed at `fps` through the tracker and the counter."""
    stage = open_box_tracker(tracker)
    counter = LaneCounter(LANE, CountingConfig(), W, H)
    got = []
    for i, boxes in enumerate(frames):
        rows = [(b[0], b[1], *(b[2:] or (CAR_W, CAR_H, 0.8))) for b in boxes]
        found = Boxes(
            np.array([(x - w / 2, y - h, x + w / 2, y) for x, y, w, h, _ in rows], np.float32).reshape(-1, 4),
            np.array([c for *_, c in rows], np.float32),
            (VehicleClass.CAR,) * len(rows),
            (W, H),
        )
        got += counter.update(stage.update(drop_nested(found, 0.7), FRAME, i / fps), i / fps)
    got += counter.flush()
    return [c.direction for c in got]


def drive(step: float, start: float = 150.0, end: float = 950.0, x: float = 500.0) -> list[list[Box]]:
    return [[(x, float(y))] for y in np.arange(start, end, step)]


@pytest.mark.parametrize(
    "fps, lengths_per_frame",
    [(30.0, 0.1), (10.0, 0.33), (5.0, 0.5), (5.0, 0.6)],
    ids=["30 fps", "10 fps", "5 fps, half a length", "5 fps, 0.6 of a length"],
)
def test_a_fast_vehicle_counts_once_at_any_processing_rate(fps: float, lengths_per_frame: float) -> None:
    assert counts(drive(CAR_H * lengths_per_frame), fps) == ["down"]


def test_frame_counting_tracker_loses_what_the_time_based_one_keeps() -> None:
    """ultralytics' ByteTrack (gate_bytetrack.yaml) scores a match by IoU times confidence in frame
    steps: at 0.6 of a box length per frame it never confirms the track."""
    path = drive(CAR_H * 0.6)
    assert counts(path, 5.0) == ["down"]
    assert counts(path, 5.0, "gate_bytetrack.yaml") == []


def test_followers_in_one_lane_each_count() -> None:
    """Two cars two lengths apart at 5 frames/s, each moving 0.6 of a length per frame."""
    step = CAR_H * 0.6
    lead = drive(step, start=300.0)
    follow = drive(step, start=300.0 - 2 * CAR_H - CAR_H)  # two lengths of gap behind the lead's bottom
    frames = [lead[i] + follow[i] if i < len(lead) else follow[i] for i in range(len(follow))]
    assert counts(frames, 5.0) == ["down", "down"]


def test_stop_and_go_on_the_line_at_5_fps_counts_once() -> None:
    """A truck creeps to the line, stands on it for 20 s with its box jittering, then drives on."""
    rng = np.random.default_rng(1)
    creep: list[list[Box]] = [[(500.0, float(y), 160.0, 120.0, 0.8)] for y in np.arange(300, 500, 15)]
    stand: list[list[Box]] = [
        [(500.0 + rng.normal(0, 3), 500.0 + rng.normal(0, 6), 160.0, 120.0, 0.8)] for _ in range(100)
    ]
    go: list[list[Box]] = [[(500.0, float(y), 160.0, 120.0, 0.8)] for y in np.arange(500, 900, 30)]
    assert counts(creep + stand + go, 5.0) == ["down"]


def test_a_vehicle_side_seen_as_its_own_box_does_not_count_twice() -> None:
    """The detector finds a car and, weaker, a narrow box along its side: one vehicle, one count."""
    frames: list[list[Box]] = [
        [(500.0, float(y), CAR_W, CAR_H, 0.8), (470.0, float(y) - 5, 18.0, 40.0, 0.3)] for y in np.arange(200, 900, 20)
    ]
    assert counts(frames, 10.0) == ["down"]


def approach(grow: float, lengths: float, h0: float = 30.0, y0: float = 250.0) -> list[list[Box]]:
    """A car coming towards the camera: its box grows by `grow` per processed frame and moves `lengths`
    of its own (current) height, as degirum's near lane does at 5 frames/s."""
    out: list[list[Box]] = []
    y, h = y0, h0
    while y < 990:
        out.append([(500.0, y, h * 1.3, h, 0.8)])
        y += h * lengths
        h *= grow
    return out


@pytest.fixture
def no_step_buffer(tmp_path: Path) -> str:
    default = TRACKERS_DIR / "gate_rf_bytetrack.yaml"
    settings = yaml.safe_load(default.read_text())
    assert settings["step_buffer_per_s"] > 0
    path = tmp_path / "no_buffer.yaml"
    path.write_text(yaml.safe_dump({**settings, "step_buffer_per_s": 0.0}))
    return str(path)


@pytest.mark.parametrize(
    "frames",
    [drive(CAR_H * 0.8), approach(1.2, 0.8), approach(1.2, 1.0), approach(1.5, 1.0)],
    ids=["0.8 of a length", "growing 1.2x, 0.8 of a length", "growing 1.2x, a length", "growing 1.5x, a length"],
)
def test_the_step_buffer_keeps_a_track_that_jumps_off_its_prediction(
    frames: list[list[Box]], no_step_buffer: str
) -> None:
    """At 5 frames/s these boxes share too little IoU with their track's prediction: without the step
    buffer the track breaks into pieces that never confirm (nothing counts); with it, one count."""
    assert counts(frames, 5.0) == ["down"]
    assert counts(frames, 5.0, no_step_buffer) == []


def test_the_step_buffer_is_plain_iou_at_full_rate_and_for_matched_pairs() -> None:
    iou = StepBufferedIoU(min_iou=0.2)
    tracks = np.array([[0, 0, 10, 10], [100, 0, 110, 10]], np.float64)
    boxes = np.array([[1, 0, 11, 10], [111, 0, 121, 10]], np.float64)  # first overlaps, second is 1 px off
    plain = iou.compute(tracks, boxes)
    assert plain[1, 1] == 0.0
    iou.ratio = 0.5  # a long step: only the unmatched pair (track 1, box 1) is widened
    wide = iou.compute(tracks, boxes)
    assert wide[0, 0] == plain[0, 0] and wide[0, 1] == plain[0, 1] and wide[1, 0] == plain[1, 0]
    assert wide[1, 1] > 0.2
