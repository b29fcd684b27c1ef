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
