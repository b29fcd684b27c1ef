"""The tracker stage: untracked `Boxes` of one frame -> tracked `Detections`, and its composition
with a `Detector` into the pipeline's `Tracker`.

Trackers are chosen by a settings file (`model.tracker`): a YAML in edge/stages/trackers (or a path)
whose `tracker_type` picks the implementation from `BOX_TRACKERS`. A bare name that is not ours
(`bytetrack.yaml`, `botsort.yaml`) is one of ultralytics' own configs. Implementations are imported
only when chosen, so a torch-free unit never loads ultralytics through its tracker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

from edge import EdgeError
from edge.stages.detections import Boxes, Detections, clip_to_frame, drop_implausible
from edge.stages.detector import Detector, Frame

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
    """A `Tracker` made of a `Detector` and a `BoxTracker`, timing each for benchmarks and health."""

    def __init__(self, detector: Detector, tracker: BoxTracker, max_box_share: float) -> None:
        self.detector = detector
        self.tracker = tracker
        self.max_box_share = max_box_share
        self._inference_ms = 0.0
        self._tracking_ms = 0.0

    @property
    def last_inference_ms(self) -> float:
        return self._inference_ms

    @property
    def last_tracking_ms(self) -> float:
        return self._tracking_ms

    def reset(self) -> None:
        """Forget tracker state between clips, so ids from one clip never leak into the next."""
        self.tracker.reset()

    def update(self, frame: Frame, t: float) -> Detections:
        t0 = time.perf_counter()
        boxes = self.detector.detect(frame)
        t1 = time.perf_counter()
        # boxes covering most of the frame are dropped after tracking, not before: the tracker
        # still matches them, so a vehicle that briefly fills the view keeps its id
        dets = drop_implausible(clip_to_frame(self.tracker.update(boxes, frame, t)), self.max_box_share)
        t2 = time.perf_counter()
        self._inference_ms = (t1 - t0) * 1000
        self._tracking_ms = (t2 - t1) * 1000
        return dets


def _ultralytics(settings: dict[str, Any]) -> BoxTracker:
    from edge.stages.detector_ultralytics import UltralyticsBoxTracker

    return UltralyticsBoxTracker(settings)


def _roboflow(settings: dict[str, Any]) -> BoxTracker:
    from edge.stages.tracker_roboflow import RoboflowByteTrack

    return RoboflowByteTrack(settings)


#: tracker_type -> factory taking the settings file's contents.
BOX_TRACKERS: dict[str, Callable[[dict[str, Any]], BoxTracker]] = {
    "bytetrack": _ultralytics,  # ultralytics' BYTETracker (needs torch: ultralytics imports it)
    "botsort": _ultralytics,
    "rf_bytetrack": _roboflow,  # roboflow trackers' ByteTrack: torch-free, time-based
}


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


def open_box_tracker(name: str) -> BoxTracker:
    """The tracker stage named by `model.tracker`."""
    path = resolve_tracker(name)
    if path is None:
        from edge.stages.detector_ultralytics import UltralyticsBoxTracker

        return UltralyticsBoxTracker.bundled(name)
    settings = read_tracker_settings(path)
    factory = BOX_TRACKERS.get(settings["tracker_type"])
    if factory is None:
        raise TrackerError(
            f"unknown tracker_type {settings['tracker_type']!r} in {path}; choose from {sorted(BOX_TRACKERS)}"
        )
    return factory(settings)
