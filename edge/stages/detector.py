"""The seams between frames and tracked vehicles: `Detector` (frame -> untracked `Boxes`) and
`Tracker` (frame -> tracked `Detections`, what the pipeline sees).

This module knows no model runtime: each detector lives in a module of its own
(`edge.stages.detector_ultralytics` is the only one that imports ultralytics), so a unit that runs a
torch-free detector never imports torch. A `Tracker` is usually a `Detector` composed with a tracker
stage (`edge.stages.tracking.DetectAndTrack`); `build_tracker` wires both from the unit config.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge import EdgeError
from edge.config import ModelConfig
from edge.stages.detections import Boxes, Detections

Frame = npt.NDArray[np.uint8]
MODEL_SUFFIXES = {".pt", ".onnx", ".tflite", ".torchscript", ".engine", ".mlpackage", ".xml"}


class ModelError(EdgeError):
    """The model file is missing or cannot be loaded."""


class Detector(Protocol):
    """Seam between a frame and the vehicles in it, untracked: boxes in frame pixels, confidences
    and gate classes (model classes outside the class map never leave the detector)."""

    def detect(self, frame: Frame) -> Boxes: ...


class Tracker(Protocol):
    """Seam between frames and tracked detections: the only thing the pipeline sees.

    `t` is the frame's time in seconds (source clock), so a tracker can keep its settings in
    seconds and stay right when a slow unit processes only some of the camera's frames.
    """

    def update(self, frame: Frame, t: float) -> Detections: ...

    def reset(self) -> None: ...

    @property
    def last_inference_ms(self) -> float:
        """Detector time of the last frame (pre/post-processing included), in ms."""
        ...

    @property
    def last_tracking_ms(self) -> float:
        """Tracker time of the last frame, in ms."""
        ...


def check_model_path(path: Path) -> Path:
    """Refuse anything ultralytics might treat as a name to download."""
    if not path.exists():
        raise ModelError(f"model not found: {path} (set model.path or GATEWATCH_MODEL to a real file)")
    if path.is_dir():
        if not any(path.glob("*.param")) and not any(path.glob("*.xml")):
            raise ModelError(f"model folder {path} is not an NCNN or OpenVINO export")
    elif path.suffix not in MODEL_SUFFIXES:
        raise ModelError(f"unsupported model format {path.suffix!r}: {path}")
    return path


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
    return cfg.format


def open_detector(cfg: ModelConfig) -> Detector:
    """The detector for the configured model. Imported lazily: only the chosen runtime is loaded, so
    on the ONNX and NCNN paths torch never is (a `.pt` is exported first, in a process of its own)."""
    runtime = runtime_for(cfg)
    if runtime == "ultralytics":
        from edge.stages.detector_ultralytics import UltralyticsDetector

        return UltralyticsDetector(cfg)
    path = check_model_path(cfg.path)
    if path.suffix == ".pt":
        from edge.devtools.export import cached_export

        cfg = cfg.model_copy(update={"path": cached_export(path, runtime, cfg.imgsz)})
    if runtime == "onnx":
        from edge.stages.detector_onnx import OnnxDetector

        return OnnxDetector(cfg)
    from edge.stages.detector_ncnn import NcnnDetector

    return NcnnDetector(cfg)


def build_tracker(cfg: ModelConfig) -> Tracker:
    """The real detector and tracker stage for a unit config, composed into the pipeline's `Tracker`."""
    from edge.stages.tracking import DetectAndTrack, open_box_tracker

    return DetectAndTrack(open_detector(cfg), open_box_tracker(cfg.tracker), cfg.max_box_share)
