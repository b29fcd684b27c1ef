"""The one data type that travels between detection, tracking and counting.

Only `edge.stages.detector` knows ultralytics; everything downstream sees `Detections`, so the
counting logic can be tested with hand-made box sequences and the detector can be swapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from wire.payloads import VehicleClass

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


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


def drop_implausible(dets: Detections, max_box_share: float) -> Detections:
    """Drop boxes covering most of the frame: both test models report such boxes on empty roads."""
    w, h = dets.frame_size
    if not len(dets) or not w or not h:
        return dets
    area = (dets.xyxy[:, 2] - dets.xyxy[:, 0]) * (dets.xyxy[:, 3] - dets.xyxy[:, 1])
    return dets.select(area <= max_box_share * w * h)
