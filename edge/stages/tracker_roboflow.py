"""ByteTrack from roboflow's `trackers` library behind the `BoxTracker` seam: torch-free, so the path
a Pi runs (ONNX Runtime or NCNN detector) never loads torch through its tracker.

Why this one: it is maintained (Apache-2.0), needs only numpy/scipy/supervision, and takes each
frame's timestamp, so its Kalman prediction and lost-track buffer follow time, not frame counts: a unit
that processes 5 of the camera's 30 frames a second predicts six camera frames of motion per step.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.stages.detections import VEHICLE_CLASSES, Boxes, Detections
from edge.stages.detector import Frame
from edge.stages.tracking import TrackerError


class RoboflowByteTrackSettings(BaseModel):
    """Settings file for `tracker_type: rf_bytetrack` (see edge/stages/trackers/gate_rf_bytetrack.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracker_type: str = Field("rf_bytetrack", title="Tracker type", description="rf_bytetrack")
    high_conf: float = Field(
        0.25, gt=0, lt=1, title="High-confidence threshold",
        description="boxes at or above this are matched first; weaker ones only extend existing tracks",
    )
    new_track_conf: float = Field(
        0.25, gt=0, lt=1, title="New-track threshold", description="an unmatched box this confident starts a track"
    )
    min_iou: float = Field(0.2, gt=0, lt=1, title="Minimum IoU", description="to match a box to a track's prediction")
    confirm_frames: int = Field(
        2, ge=1, le=10, title="Frames to confirm", description="a track gets an id after this many matched frames"
    )
    lost_track_s: float = Field(
        1.0, gt=0, le=30, title="Lost-track buffer", description="seconds a track survives without a match"
    )
    motion_model: Literal["xyxy", "xcycsr"] = Field(
        "xyxy", title="Kalman state", description="corners (xyxy) or centre, area and aspect ratio (xcycsr, as SORT)"
    )
    nominal_fps: float = Field(
        30.0, gt=0, le=240, title="Nominal frame rate",
        description="the camera's frame rate: Kalman steps per second of elapsed time",
    )


class RoboflowByteTrack:
    def __init__(self, settings: dict[str, Any]) -> None:
        try:
            self.settings = RoboflowByteTrackSettings.model_validate(settings)
        except ValidationError as exc:
            raise TrackerError(f"rf_bytetrack settings: {exc}") from exc
        self.tracker = self._make()

    def _make(self) -> Any:
        from trackers import ByteTrackTracker
        from trackers.utils.state_representations import XCYCSRStateEstimator, XYXYStateEstimator

        s = self.settings
        return ByteTrackTracker(
            lost_track_buffer=max(1, round(s.lost_track_s * 30)),  # the library counts 30 fps frames
            frame_rate=s.nominal_fps,
            track_activation_threshold=s.new_track_conf,
            minimum_consecutive_frames=s.confirm_frames,
            minimum_iou_threshold=s.min_iou,
            high_conf_det_threshold=s.high_conf,
            state_estimator_class=XCYCSRStateEstimator if s.motion_model == "xcycsr" else XYXYStateEstimator,
        )

    def reset(self) -> None:
        self.tracker.reset()

    def update(self, boxes: Boxes, frame: Frame, t: float) -> Detections:
        import supervision as sv

        dets = sv.Detections(
            xyxy=boxes.xyxy.astype(np.float32).reshape(-1, 4),
            confidence=boxes.confidence,
            class_id=boxes.class_ids(),
        )
        out = self.tracker.update(dets, timestamp=t)
        tracked = np.asarray(out.tracker_id) >= 0  # -1: not (yet) a confirmed track
        if not tracked.any():
            return Detections.empty(boxes.frame_size)
        out = out[tracked]
        return Detections(
            np.asarray(out.xyxy, np.float32),
            np.asarray(out.confidence, np.float32),
            np.asarray(out.tracker_id, np.int64),
            tuple(VEHICLE_CLASSES[int(c)] for c in out.class_id),
            boxes.frame_size,
        )
