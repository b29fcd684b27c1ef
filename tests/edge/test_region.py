"""Detection on the lanes' region: the window, the crop handed to the detector, boxes back in frame
pixels, and no fake crossing from a box cut by the window's edge (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import CountingConfig, LaneConfig, LineConfig, RegionConfig
from edge.stages.counting import LaneCounter
from edge.stages.detections import Boxes, Detections
from edge.stages.detector import Frame
from edge.stages.region import LaneRegion, lanes_window
from edge.stages.tracking import DetectAndTrack
from wire.payloads import VehicleClass

W, H = 1000, 1000
FRAME = np.zeros((H, W, 3), np.uint8)
LANE = LaneConfig(id="l1", line=LineConfig(a=(0.0, 0.5), b=(1.0, 0.5), band=0.03), directions=("down", "up"))
BAND = 0.03 * np.hypot(W, H)  # 42.4 px
MARGIN = 0.1
# y from 500 - 42.4 - 100 to 500 + 42.4 + 100, full width
WINDOW = (0, 357, 1000, 643)


def test_window_holds_the_bands_and_queue_zones_plus_the_margin() -> None:
    assert lanes_window([LANE], W, H, MARGIN) == WINDOW
    queued = LANE.model_copy(update={"queue_zone": [(0.2, 0.15), (0.8, 0.15), (0.8, 0.5), (0.2, 0.5)]})
    assert lanes_window([queued], W, H, MARGIN) == (0, 50, 1000, 643)
    vertical = LaneConfig(id="v", line=LineConfig(a=(0.5, 0.1), b=(0.5, 0.9), band=0.03), directions=("l", "r"))
    x1, y1, x2, y2 = lanes_window([vertical], W, H, MARGIN)
    assert (x1, x2) == (357, 643) and (y1, y2) == (0, 1000)  # clipped to the frame


@pytest.mark.parametrize(
    "cfg, expected",
    [
        (RegionConfig(mode="lanes", margin=MARGIN), WINDOW),
        (RegionConfig(mode="frame"), None),
        (RegionConfig(mode="lanes", margin=0.45), None),  # 97 % of the frame: not worth a crop
    ],
    ids=["lanes", "frame", "region too large"],
)
def test_region_modes(cfg: RegionConfig, expected: tuple[int, int, int, int] | None) -> None:
    region = LaneRegion(cfg)
    assert region.window(W, H) is None  # no lanes yet: the whole frame
    region.focus([LANE])
    assert region.window(W, H) == expected


class WindowDetector:
    """Sees vehicles only through the window it is handed, as a model would: each true box (frame
    pixels) cut to the window, in the crop's pixels; remembers the shapes it was given."""

    def __init__(self, frames: list[list[tuple[float, float, float, float]]], window: tuple[int, int, int, int]):
        self.frames = iter(frames)
        self.window = window
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, frame: Frame) -> Boxes:
        self.shapes.append(frame.shape)
        x1, y1, x2, y2 = self.window
        out = []
        for bx1, by1, bx2, by2 in next(self.frames):
            cx1, cy1, cx2, cy2 = max(bx1, x1), max(by1, y1), min(bx2, x2), min(by2, y2)
            if cx2 > cx1 and cy2 > cy1:
                out.append((cx1 - x1, cy1 - y1, cx2 - x1, cy2 - y1))
        h, w = frame.shape[:2]
        return Boxes(
            np.array(out, np.float32).reshape(-1, 4), np.full(len(out), 0.9, np.float32),
            (VehicleClass.CAR,) * len(out), (w, h),
        )


class OneTrack:
    """Every box is vehicle 1: the crop, not the tracker, is under test."""

    def update(self, boxes: Boxes, frame: Frame, t: float) -> Detections:
        n = len(boxes)
        return Detections(boxes.xyxy, boxes.confidence, np.ones(n, np.int64), boxes.vehicle_class, boxes.frame_size)

    def reset(self) -> None:
        pass


def count(bottoms: list[float], height: float = 60.0) -> tuple[int, WindowDetector, list[Detections]]:
    frames = [[(460.0, b - height, 540.0, b)] for b in bottoms]
    detector = WindowDetector(frames, WINDOW)
    region = LaneRegion(RegionConfig(mode="lanes", margin=MARGIN))
    both = DetectAndTrack(detector, OneTrack(), max_box_share=0.5, region=region)
    both.focus([LANE])
    counter = LaneCounter(LANE, CountingConfig(), W, H)
    seen, crossings = [], []
    for i, _ in enumerate(bottoms):
        dets = both.update(FRAME, i / 5)
        seen.append(dets)
        crossings += counter.update(dets, i / 5)
    crossings += counter.flush()
    return len(crossings), detector, seen


def test_detector_sees_the_window_and_boxes_come_back_in_frame_pixels() -> None:
    crossed, detector, seen = count([450.0, 520.0, 600.0])
    assert crossed == 1
    assert detector.shapes == [(643 - 357, 1000, 3)] * 3
    assert seen[0].frame_size == (W, H)
    assert seen[0].xyxy.tolist() == [[460.0, 390.0, 540.0, 450.0]]
    assert seen[2].xyxy.tolist() == [[460.0, 540.0, 540.0, 600.0]]


@pytest.mark.parametrize(
    "bottoms, height, expected",
    [
        ([200, 330, 420, 480, 560, 620, 700, 800, 900], 60, 1),  # drives through: cut on entry and exit
        ([200, 330, 420, 480, 560, 620, 700, 800, 900], 400, 1),  # a long truck, its top cut while it crosses
        ([200, 330, 420, 480, 520, 480, 420, 330], 60, 0),  # into the band and back out
        ([700, 800, 900, 950, 900, 800, 700], 300, 0),  # below the window, only its top seen, cut at the edge
        ([100, 200, 300, 400, 440, 400, 300], 250, 0),  # comes into the window from above, its top cut, backs off
    ],
    ids=["car through", "long truck through", "band and back", "below the window", "into the window and back"],
)
def test_boxes_cut_by_the_window_never_fake_a_crossing(bottoms: list[float], height: float, expected: int) -> None:
    assert count(bottoms, height)[0] == expected
