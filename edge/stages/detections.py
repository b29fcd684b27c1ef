"""The data types that travel between detection, tracking and counting.

A detector produces `Boxes` (untracked), a tracker stage turns them into `Detections` (tracked).
No model runtime is known here: everything downstream sees `Detections`, so the counting logic can
be tested with hand-made box sequences and the detector or tracker can be swapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from wire.payloads import VehicleClass

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

#: A stable numeric id per gate class, for trackers that keep a class number per track.
VEHICLE_CLASSES: tuple[VehicleClass, ...] = tuple(VehicleClass)
_CLASS_ID = {c: i for i, c in enumerate(VEHICLE_CLASSES)}


@dataclass(frozen=True, slots=True)
class Boxes:
    """Untracked vehicle boxes a detector found in one frame, in frame pixels (x1, y1, x2, y2).

    Kept apart from `Detections` so a tracker stage can never be handed ids it did not make.
    """

    xyxy: FloatArray
    confidence: FloatArray
    vehicle_class: tuple[VehicleClass, ...]
    frame_size: tuple[int, int] = field(default=(0, 0))  # (width, height)

    def __post_init__(self) -> None:
        if not (len(self.confidence) == len(self.vehicle_class) == len(self.xyxy)):
            raise ValueError("Boxes arrays must have equal length")

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls, frame_size: tuple[int, int] = (0, 0)) -> Boxes:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), (), frame_size)

    def select(self, mask: npt.NDArray[np.bool_]) -> Boxes:
        idx = np.flatnonzero(mask)
        return Boxes(
            self.xyxy[idx], self.confidence[idx], tuple(self.vehicle_class[i] for i in idx), self.frame_size
        )

    def scaled(self, frame_size: tuple[int, int]) -> Boxes:
        """The boxes of a resized copy of a frame, in the pixels of the frame of `frame_size` (w, h):
        x and y scale apart, as a letterbox maps its boxes back."""
        w, h = self.frame_size
        if not w or not h:
            raise ValueError("boxes without a frame size cannot be scaled")
        factor = np.array([frame_size[0] / w, frame_size[1] / h] * 2, dtype=np.float32)
        return Boxes(self.xyxy * factor, self.confidence, self.vehicle_class, frame_size)

    def class_ids(self) -> IntArray:
        """Each box's index in `VEHICLE_CLASSES` (trackers from libraries keep classes as numbers)."""
        return np.fromiter((_CLASS_ID[c] for c in self.vehicle_class), np.int64, len(self.vehicle_class))


@dataclass(frozen=True, slots=True)
class Detections:
    """Tracked vehicle boxes in one frame, in pixels (x1, y1, x2, y2)."""

    xyxy: FloatArray
    confidence: FloatArray
    track_id: IntArray
    vehicle_class: tuple[VehicleClass, ...]
    frame_size: tuple[int, int] = field(default=(0, 0))  # (width, height)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if not (len(self.confidence) == len(self.track_id) == len(self.vehicle_class) == n):
            raise ValueError("Detections arrays must have equal length")

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls, frame_size: tuple[int, int] = (0, 0)) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), (), frame_size
        )

    @classmethod
    def from_lists(
        cls,
        boxes: list[tuple[float, float, float, float]],
        track_ids: list[int],
        classes: list[VehicleClass],
        confidence: list[float] | None = None,
        frame_size: tuple[int, int] = (0, 0),
    ) -> Detections:
        return cls(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(confidence if confidence is not None else [1.0] * len(boxes), np.float32),
            np.asarray(track_ids, np.int64),
            tuple(classes),
            frame_size,
        )

    def select(self, mask: npt.NDArray[np.bool_]) -> Detections:
        idx = np.flatnonzero(mask)
        return Detections(
            self.xyxy[idx],
            self.confidence[idx],
            self.track_id[idx],
            tuple(self.vehicle_class[i] for i in idx),
            self.frame_size,
        )

    def reference_points(self) -> FloatArray:
        """Bottom-centre of each box: the point that sits on the road, so perspective and
        box height (a tall truck vs a low car) do not shift where a vehicle 'is'."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        return np.stack([x, self.xyxy[:, 3]], axis=1).astype(np.float32)


def clip_to_frame(dets: Detections) -> Detections:
    """Clip boxes to the frame: a tracker's predicted box may run past the edge, but a vehicle's
    reference point must stay on the picture."""
    w, h = dets.frame_size
    if not len(dets) or not w or not h:
        return dets
    xyxy = dets.xyxy.copy()
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    return Detections(xyxy, dets.confidence, dets.track_id, dets.vehicle_class, dets.frame_size)


def drop_implausible(dets: Detections, max_box_share: float) -> Detections:
    """Drop boxes covering most of the frame: both test models report such boxes on empty roads."""
    w, h = dets.frame_size
    if not len(dets) or not w or not h:
        return dets
    area = (dets.xyxy[:, 2] - dets.xyxy[:, 0]) * (dets.xyxy[:, 3] - dets.xyxy[:, 1])
    return dets.select(area <= max_box_share * w * h)


def _overlaps_by_confidence(
    boxes: Boxes,
) -> tuple[IntArray, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The boxes ordered most confident first (stable), with their areas and pairwise intersections
    in that order: what both duplicate filters below judge by."""
    order = np.argsort(-boxes.confidence, kind="stable")
    b = boxes.xyxy[order].astype(np.float64)
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    return order, area, iw * ih


def drop_nested(boxes: Boxes, share: float) -> Boxes:
    """Drop a box that lies mostly (`share` of its area) inside a larger, more confident box.

    Class-agnostic NMS keeps such boxes because their IoU with the whole vehicle is small: a car's
    side, a trailer, the front half of a truck. Tracked on their own they cross the line beside the
    vehicle they belong to and count it twice. A vehicle behind another is rarely this much inside
    the front one's box, and when it is, it is hidden there anyway.
    """
    if len(boxes) < 2:
        return boxes
    order, area, inter = _overlaps_by_confidence(boxes)
    n = len(boxes)
    inside = inter / np.maximum(area[:, None], 1e-9)  # [i, j]: share of box i inside box j
    keep = np.ones(n, dtype=bool)
    for i in range(1, n):  # j < i: more confident; only a kept box can swallow another
        swallowed = (inside[i, :i] >= share) & (area[:i] > area[i]) & keep[:i]
        keep[i] = not swallowed.any()
    mask = np.zeros(n, dtype=bool)
    mask[order[keep]] = True
    return boxes.select(mask)


#: share of a more confident box a weaker one must hold to be its duplicate (`drop_wrapping`)
WRAP_SHARE = 0.9


def drop_wrapping(boxes: Boxes, min_iou: float, share: float = WRAP_SHARE) -> Boxes:
    """Drop a weaker box that holds nearly all of a more confident box and overlaps it by `min_iou`.

    The converse of `drop_nested`: on dark, noisy frames the detector often wraps a car in a second,
    looser and weaker box (a car and its shadow or headlight glare) whose IoU with the tight one stays
    just under NMS's threshold. The nested filter keeps it, because it is the larger box, and tracked on
    its own it crosses beside the car and counts it twice (degirum in the dark: 13 of 11). Two cars side
    by side or one behind the other never hold 90 % of each other, so they are not touched.
    """
    if len(boxes) < 2:
        return boxes
    order, area, inter = _overlaps_by_confidence(boxes)
    n = len(boxes)
    iou = inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-9)
    held = inter / np.maximum(area[None, :], 1e-9)  # [i, j]: share of box j inside box i
    keep = np.ones(n, dtype=bool)
    for i in range(1, n):  # j < i: more confident; only a kept box can make another its duplicate
        wraps = (held[i, :i] >= share) & (iou[i, :i] >= min_iou) & keep[:i]
        keep[i] = not wraps.any()
    mask = np.zeros(n, dtype=bool)
    mask[order[keep]] = True
    return boxes.select(mask)
