"""Motion gating: the detector rests while nothing moves where the lanes are, and a standing queue
keeps its boxes (pure logic on synthetic frames, no model)."""

from __future__ import annotations

import numpy as np

from edge.config import LaneConfig, LineConfig, MotionGateConfig
from edge.stages.detections import Boxes
from edge.stages.detector import Frame
from edge.stages.motion import MotionGate
from edge.stages.tracking import DetectAndTrack
from tests.edge.test_tracking import EchoTracker, boxes
from wire.payloads import VehicleClass

W, H = 640, 480
# one lane across the middle: the watched area is its band plus a 0.2 margin, y 0.3..0.7 of the frame
LANE = LaneConfig(id="l1", line=LineConfig(a=(0.0, 0.5), b=(1.0, 0.5)), directions=("down", "up"))


def scene(car_x: int | None = None, sky_blob: bool = False, level: int = 90) -> Frame:
    """A grey road with a dark car at `car_x` on the lane, and optionally a blob in the sky above it."""
    img = np.full((H, W, 3), level, np.uint8)
    if car_x is not None:
        img[220:260, car_x:car_x + 60] = 20
    if sky_blob:
        img[10:60, 300:400] = 250  # a bird, a cloud, a lamp far outside the lanes
    return img


def gate(**kw: float) -> MotionGate:
    g = MotionGate(MotionGateConfig(**kw))
    g.focus([LANE])
    return g


def test_a_still_scene_skips_and_a_moving_car_does_not() -> None:
    g = gate()
    assert g.needs_inference(scene(100), 0.0)  # nothing to compare with yet
    assert not g.needs_inference(scene(100), 0.1)
    assert not g.needs_inference(scene(100), 0.2)
    assert g.needs_inference(scene(130), 0.3)  # the car moved half its length
    assert (g.inferred, g.skipped) == (2, 2)


def test_creeping_is_compared_with_the_last_inferred_frame_so_it_adds_up() -> None:
    g = gate()
    assert g.needs_inference(scene(100), 0.0)
    # a truck creeping 1 px a frame: each step alone is below the threshold, the sum is not
    steps = [g.needs_inference(scene(100 + k), 0.1 * k) for k in range(1, 20)]
    assert not steps[0] and any(steps)


def test_change_outside_the_lanes_is_ignored_and_max_skip_forces_a_look() -> None:
    g = gate(max_skip_s=1.0)
    assert g.needs_inference(scene(100), 0.0)
    assert not g.needs_inference(scene(100, sky_blob=True), 0.2)
    assert g.needs_inference(scene(100, sky_blob=True), 1.0)  # the longest skip is up
    assert not g.needs_inference(scene(100, sky_blob=True), 1.1)


def test_light_change_and_a_new_clip_start_over() -> None:
    g = gate()
    assert g.needs_inference(scene(100), 0.0)
    assert g.needs_inference(scene(100, level=140), 0.1)  # headlights sweep the lane: look again
    g.reset()
    assert g.needs_inference(scene(100, level=140), 0.2)
    assert g.needs_inference(scene(100, level=140), 0.1)  # time went backwards: another clip or a clock step


class CountingDetector:
    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frame: Frame) -> Boxes:
        self.calls += 1
        return boxes((100 + self.calls, 220, 160 + self.calls, 260, 0.9, VehicleClass.TRUCK))


def test_the_tracker_keeps_the_standing_queue_while_the_detector_rests() -> None:
    detector, tracker = CountingDetector(), EchoTracker()
    stage = DetectAndTrack(detector, tracker, max_box_share=0.5, gate=MotionGate(MotionGateConfig()))
    stage.focus([LANE])
    frames = [scene(100)] * 5 + [scene(160)]
    dets = [stage.update(f, 0.1 * i) for i, f in enumerate(frames)]
    assert detector.calls == 2  # the first frame and the one where the truck moved
    assert all(len(d) == 1 for d in dets)  # the truck never left the tracker's view
    assert [len(b) for b, _ in tracker.seen] == [1] * 6
    assert tracker.seen[3][0].xyxy.tolist() == tracker.seen[0][0].xyxy.tolist()  # the same boxes, held
    assert [t for _, t in tracker.seen] == [0.1 * i for i in range(6)]  # at each frame's own time
    stage.reset()
    stage.update(scene(160), 0.0)
    assert detector.calls == 3  # after a reset the detector looks first
