"""Resolution where the lanes are: the detector looks at the part of the frame that holds the lanes.

A whole 16:9 frame shrunk to the model's input spends most of its pixels on sky, verges and the far
carriageway, and a small far vehicle shrinks below what a nano model finds. The counting lines'
tolerance bands and the queue zones, plus a margin for the tracker to pick a vehicle up before it
reaches the band, are usually a fraction of the frame: cut that out and the detector sees it at a
larger scale (a narrow region is scaled up to the model's input) or, for a wide one, at the same scale
for fewer pixels, which costs less.

Boxes cut by the region's edge cannot fake a crossing: the region holds every band with the margin
around it, so a cut edge lies beyond a band, and a box cut there keeps its reference point (the
bottom-centre) on the same side of the line as the vehicle's real one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edge.config import LaneConfig, RegionConfig
from edge.stages.detections import Boxes

Image = npt.NDArray[np.uint8]
Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels, x2/y2 exclusive


def lanes_window(lanes: Sequence[LaneConfig], width: int, height: int, margin: float) -> Window:
    """The pixel rectangle holding every lane's line band and queue zone, grown by `margin` (a share
    of the frame's width and height on each side), clipped to the frame."""
    diag = math.hypot(width, height)
    xs: list[float] = []
    ys: list[float] = []
    for lane in lanes:
        band = lane.line.band * diag
        for x, y in (lane.line.a, lane.line.b):
            xs += [x * width - band, x * width + band]
            ys += [y * height - band, y * height + band]
        for x, y in lane.queue_zone or []:
            xs.append(x * width)
            ys.append(y * height)
    mx, my = margin * width, margin * height
    x1 = max(0, math.floor(min(xs) - mx))
    y1 = max(0, math.floor(min(ys) - my))
    x2 = min(width, math.ceil(max(xs) + mx))
    y2 = min(height, math.ceil(max(ys) + my))
    return x1, y1, x2, y2


class LaneRegion:
    """The detector's window on the frame, worked out once per frame size from the lanes."""

    def __init__(self, cfg: RegionConfig) -> None:
        self.cfg = cfg
        self._lanes: tuple[LaneConfig, ...] = ()
        self._windows: dict[tuple[int, int], Window | None] = {}

    def focus(self, lanes: Sequence[LaneConfig]) -> None:
        self._lanes = tuple(lanes)
        self._windows.clear()

    def window(self, width: int, height: int) -> Window | None:
        """The window, or None to look at the whole frame (region off, no lanes yet, or the lanes'
        region is so much of the frame that cropping would gain nothing)."""
        key = (width, height)
        if key not in self._windows:
            win: Window | None = None
            if self.cfg.mode == "lanes" and self._lanes:
                win = lanes_window(self._lanes, width, height, self.cfg.margin)
                x1, y1, x2, y2 = win
                if (x2 - x1) * (y2 - y1) > self.cfg.max_share * width * height:
                    win = None
            self._windows[key] = win
        return self._windows[key]


def crop(frame: Image, window: Window | None) -> Image:
    if window is None:
        return frame
    x1, y1, x2, y2 = window
    return frame[y1:y2, x1:x2]


def to_frame(boxes: Boxes, window: Window | None, frame_size: tuple[int, int]) -> Boxes:
    """Boxes found in the window, in the whole frame's pixels."""
    if window is None:
        return boxes
    x1, y1 = window[0], window[1]
    offset = np.array([x1, y1, x1, y1], dtype=np.float32)
    return Boxes(boxes.xyxy + offset, boxes.confidence, boxes.vehicle_class, frame_size)
