"""The tracker stage: untracked `Boxes` of one frame -> tracked `Detections`, and its composition
with a `Detector` into the pipeline's `Tracker`.

Trackers are chosen by a settings file (`model.tracker`): a YAML in edge/stages/trackers (or a path)
whose `tracker_type` picks the implementation (`edge.stages.runtimes.BOX_TRACKERS`). A bare name that is not ours
(`bytetrack.yaml`, `botsort.yaml`) is one of ultralytics' own configs. Implementations are imported
only when chosen, so a torch-free unit never loads ultralytics through its tracker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import yaml

from edge import EdgeError
from edge.config import LaneConfig
from edge.stages.detections import Boxes, Detections, clip_to_frame, drop_implausible, drop_nested, drop_wrapping
from edge.stages.detector import Detector, Frame
from edge.stages.enhance import NightEnhancer
from edge.stages.motion import MotionGate
from edge.stages.region import LaneRegion, crop, to_frame

TRACKERS_DIR = Path(__file__).resolve().parent / "trackers"


class TrackerError(EdgeError):
    """The tracker settings are missing, unreadable or name an unknown tracker."""


class BoxTracker(Protocol):
    """Seam between one frame's untracked boxes and tracked detections.

    `frame` is there for trackers that look at pixels (camera-motion compensation, appearance);
    `t` (seconds, source clock) for trackers that keep their settings in seconds.
    """

    def update(self, boxes: Boxes, frame: Frame, t: float) -> Detections: ...

    def reset(self) -> None: ...


class DetectAndTrack:
    """A `Tracker` made of a `Detector` and a `BoxTracker`, timing each for benchmarks and health.

    Before the detector: the lanes' region is cut out of the frame (`region`) and, when the scene is
    dark, brightened (`night`); the boxes come back in whole-frame pixels, so the tracker, counting
    and the annotated video never see the crop. Boxes nested in a larger one (`nested_share`) and
    weaker boxes wrapped round a more confident one (`duplicate_iou`) are dropped before the tracker
    sees them.
    """

    def __init__(
        self,
        detector: Detector,
        tracker: BoxTracker,
        max_box_share: float,
        region: LaneRegion | None = None,
        night: NightEnhancer | None = None,
        nested_share: float | None = None,
        *,
        gate: MotionGate | None = None,
        duplicate_iou: float | None = None,
        input_side: int | None = None,
    ) -> None:
        self.detector = detector
        #: the detector's input long side: a larger view is shrunk to it before the night enhancer,
        #: which then works on a fraction of the pixels (see `_shrink`)
        self.input_side = input_side
        self.gate = gate
        self._last_boxes: Boxes | None = None
        self.tracker = tracker
        self.max_box_share = max_box_share
        self.region = region
        self.night = night
        self.nested_share = nested_share
        self.duplicate_iou = duplicate_iou
        self._inference_ms = 0.0
        self._tracking_ms = 0.0

    def focus(self, lanes: Sequence[LaneConfig]) -> None:
        if self.region is not None:
            self.region.focus(lanes)
        if self.gate is not None:
            self.gate.focus(lanes)

    @property
    def last_inference_ms(self) -> float:
        return self._inference_ms

    @property
    def last_tracking_ms(self) -> float:
        return self._tracking_ms

    def reset(self) -> None:
        """Forget tracker state between clips, so ids from one clip never leak into the next."""
        self.tracker.reset()
        self._last_boxes = None
        if self.gate is not None:
            self.gate.reset()

    def update(self, frame: Frame, t: float) -> Detections:
        t0 = time.perf_counter()
        look = self.gate.needs_inference(frame, t) if self.gate is not None else True
        if look or self._last_boxes is None:
            boxes = self._last_boxes = self._detect(frame)
        else:
            boxes = self._last_boxes  # nothing moved: the last inferred frame's boxes still stand
        t1 = time.perf_counter()
        # boxes covering most of the frame are dropped after tracking, not before: the tracker
        # still matches them, so a vehicle that briefly fills the view keeps its id
        dets = drop_implausible(clip_to_frame(self.tracker.update(boxes, frame, t)), self.max_box_share)
        t2 = time.perf_counter()
        self._inference_ms = (t1 - t0) * 1000
        self._tracking_ms = (t2 - t1) * 1000
        return dets


    def _detect(self, frame: Frame) -> Boxes:
        h, w = frame.shape[:2]
        window = self.region.window(w, h) if self.region is not None else None
        view = crop(frame, window)
        size = (view.shape[1], view.shape[0])
        if self.night is not None:
            view = self.night(self._shrink(view))
        found = self.detector.detect(view)
        if (view.shape[1], view.shape[0]) != size:  # back to the view's pixels, as the letterbox maps them
            found = found.scaled(size)
        boxes = to_frame(found, window, (w, h))
        if self.nested_share is not None:
            boxes = drop_nested(boxes, self.nested_share)
        if self.duplicate_iou is not None:
            boxes = drop_wrapping(boxes, self.duplicate_iou)
        return boxes

    def _shrink(self, view: Frame) -> Frame:
        """The view at the detector's input size, made exactly as its letterbox would make it (the same
        target size and interpolation, so its own resize becomes a no-op and the model's input is the
        same bit for bit): the night enhancer's CLAHE then runs on the ~130k pixels the model sees, not a
        720p frame's 920k (4 ms a frame on dusk_rain_highway_vid2 here). A view no larger is left as is."""
        if self.input_side is None:
            return view
        h, w = view.shape[:2]
        r = min(self.input_side / h, self.input_side / w)
        if r >= 1.0:
            return view
        size = (max(round(w * r), 1), max(round(h * r), 1))
        return np.asarray(cv2.resize(view, size, interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def resolve_tracker(name: str) -> Path | None:
    """Our tuned tracker settings ship in edge/stages/trackers; a path is taken as given. None: not
    a file of ours, so one of ultralytics' bundled configs."""
    for candidate in (TRACKERS_DIR / name, Path(name)):
        if candidate.is_file():
            return candidate
    return None


def read_tracker_settings(path: Path) -> dict[str, Any]:
    try:
        settings = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TrackerError(f"cannot read tracker settings {path}: {exc}") from exc
    if not isinstance(settings, dict) or not isinstance(settings.get("tracker_type"), str):
        raise TrackerError(f"tracker settings {path} must be a mapping with a tracker_type")
    return settings
