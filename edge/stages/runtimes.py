"""Which detector runtime and which tracker implementation a model config gets.

The only module that knows every implementation (ultralytics, ONNX Runtime, NCNN, roboflow's
trackers); each is imported only when chosen, so a unit on a torch-free path never loads torch.
The seams it fills are `edge.stages.detector` (`Detector`, `Tracker`) and `edge.stages.tracking`
(`BoxTracker`); `edge.pipeline.make_tracker` is its one caller in service.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

from edge.config import ModelConfig
from edge.stages.detector import Detector, Tracker, check_model_path
from edge.stages.tracking import BoxTracker, TrackerError, read_tracker_settings, resolve_tracker


def runtime_for(cfg: ModelConfig) -> str:
    """Which runtime runs the configured model: 'onnx', 'ncnn' (torch-free) or 'ultralytics'.

    An export runs in its own format; `.pt` weights in `model.format`, where `auto` is ONNX Runtime on
    x86 and NCNN on Arm (the fastest on the Pi's cores, see docs/edge-pipeline.md).
    """
    path = cfg.path
    if path.suffix == ".onnx":
        return "onnx"
    if path.is_dir() and (path / "model.ncnn.param").is_file():
        return "ncnn"
    if path.suffix != ".pt" or cfg.format == "pt":
        return "ultralytics"
    if cfg.format == "auto":
        return "ncnn" if platform.machine().lower() in ("aarch64", "arm64") else "onnx"
    return "onnx" if cfg.format == "onnx-int8" else cfg.format


def open_detector(cfg: ModelConfig) -> Detector:
    """The detector for the configured model. Imported lazily: only the chosen runtime is loaded, so
    on the ONNX and NCNN paths torch never is (a `.pt` is exported first, in a process of its own)."""
    runtime = runtime_for(cfg)
    if runtime == "ultralytics":
        from edge.stages.detector_ultralytics import UltralyticsDetector

        return UltralyticsDetector(cfg)
    path = check_model_path(cfg.path)
    if path.suffix == ".pt":
        from edge.stages.export import cached_export

        fmt = "onnx-int8" if cfg.format == "onnx-int8" else runtime
        cfg = cfg.model_copy(update={"path": cached_export(path, fmt, cfg.imgsz, calibration=cfg.calibration)})
    if runtime == "onnx":
        from edge.stages.detector_onnx import OnnxDetector

        return OnnxDetector(cfg)
    from edge.stages.detector_ncnn import NcnnDetector

    return NcnnDetector(cfg)


def build_tracker(cfg: ModelConfig) -> Tracker:
    """The real detector and tracker stage for a unit config, composed into the pipeline's `Tracker`."""
    from edge.stages.enhance import NightEnhancer
    from edge.stages.motion import MotionGate
    from edge.stages.region import LaneRegion
    from edge.stages.tracking import DetectAndTrack

    night = NightEnhancer(cfg.night) if cfg.night.mode != "off" else None
    return DetectAndTrack(
        open_detector(cfg),
        open_box_tracker(cfg.tracker),
        cfg.max_box_share,
        LaneRegion(cfg.region),
        night,
        cfg.nested_share,
        gate=MotionGate(cfg.motion_gate) if cfg.motion_gate.enabled else None,
        duplicate_iou=cfg.duplicate_iou,
        input_side=cfg.imgsz,
    )


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
