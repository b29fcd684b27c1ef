"""YOLO detection + ByteTrack tracking through ultralytics: the only module that imports it.

Why ultralytics' own `track(persist=True)`: its ByteTrack is maintained with the models, and it
keeps tracker state between calls so we can feed frames one by one from any source.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge import EdgeError
from edge.config import ModelConfig
from edge.stages.detections import Detections, drop_implausible
from wire.payloads import VehicleClass

log = logging.getLogger(__name__)
Frame = npt.NDArray[np.uint8]
MODEL_SUFFIXES = {".pt", ".onnx", ".tflite", ".torchscript", ".engine", ".mlpackage", ".xml"}


class ModelError(EdgeError):
    """The model file is missing or cannot be loaded."""


class Tracker(Protocol):
    """Seam between frames and tracked detections (real: `UltralyticsTracker`)."""

    def update(self, frame: Frame) -> Detections: ...

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


def restrict_head(model: Any, keep_names: list[str]) -> None:
    """Cut a PyTorch YOLO detect head down to the vehicle classes.

    YOLOv8 scores each class with its own sigmoid and NMS keeps a box's best class before any
    class filter, so a top-down car scored 'airplane' 0.37 and 'car' 0.11 is thrown away whole.
    With only vehicle channels left the same box survives as 'car' (and the head is cheaper).
    Non-PyTorch exports are left as they are: re-export from a restricted model instead.
    """
    import torch

    net = getattr(model, "model", None)
    head = getattr(net, "model", [None])[-1] if net is not None else None
    if head is None or not hasattr(head, "cv3") or not hasattr(head, "nc"):
        log.info("model format has no editable head; keeping all %s classes", len(model.names))
        return
    assert net is not None
    keep = [i for i, n in model.names.items() if n in keep_names]
    if not keep or len(keep) == head.nc:
        return
    for branch in head.cv3:
        conv = branch[-1]
        new = torch.nn.Conv2d(conv.in_channels, len(keep), 1)
        new.weight.data = conv.weight.data[keep].clone()
        assert conv.bias is not None and new.bias is not None
        new.bias.data = conv.bias.data[keep].clone()
        branch[-1] = new
    names = {j: model.names[i] for j, i in enumerate(keep)}
    head.nc = len(keep)
    head.no = head.nc + head.reg_max * 4
    net.names = names
    net.nc = len(keep)
    if isinstance(getattr(net, "yaml", None), dict):
        net.yaml["nc"] = len(keep)


TRACKERS_DIR = Path(__file__).resolve().parent / "trackers"


def resolve_tracker(name: str) -> str:
    """Our tuned tracker configs ship in edge/stages/trackers; other names go to ultralytics as given."""
    ours = TRACKERS_DIR / name
    return str(ours) if ours.is_file() else name


class UltralyticsTracker:
    def __init__(self, cfg: ModelConfig) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        self.cfg = cfg
        path = check_model_path(cfg.path)
        try:
            from ultralytics import YOLO  # type: ignore[attr-defined]

            self.model: Any = YOLO(str(path), task="detect")
        except Exception as exc:  # ultralytics raises many types for a corrupt/unsupported file
            raise ModelError(f"cannot load model {path}: {exc}") from exc
        if cfg.vehicle_head:
            restrict_head(self.model, [n for n in cfg.class_map])
        names: dict[int, str] = dict(self.model.names)
        self._class_of: dict[int, VehicleClass] = {
            i: cfg.class_map[n] for i, n in names.items() if n in cfg.class_map
        }
        if not self._class_of:
            raise ModelError(f"model {path} has none of the classes {sorted(cfg.class_map)}")
        self._classes = sorted(self._class_of)
        self._tracker_cfg = resolve_tracker(cfg.tracker)
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
        predictor = getattr(self.model, "predictor", None)
        if predictor is not None and getattr(predictor, "trackers", None):
            for t in predictor.trackers:
                t.reset()

    def update(self, frame: Frame) -> Detections:
        t0 = time.perf_counter()
        results = self.model.track(
            frame,
            persist=True,
            tracker=self._tracker_cfg,
            imgsz=self.cfg.imgsz,
            conf=self.cfg.conf,
            iou=self.cfg.iou,
            classes=self._classes,
            agnostic_nms=True,  # one vehicle, one box: a truck also scored 'car' must not become two tracks
            verbose=False,
        )
        total_ms = (time.perf_counter() - t0) * 1000
        speed = results[0].speed or {}
        self._inference_ms = sum(v for v in speed.values() if v is not None)
        self._tracking_ms = max(0.0, total_ms - self._inference_ms)
        h, w = frame.shape[:2]
        return drop_implausible(self._to_detections(results[0], (w, h)), self.cfg.max_box_share)

    def _to_detections(self, result: Any, size: tuple[int, int]) -> Detections:
        boxes = result.boxes
        if boxes is None or boxes.id is None or len(boxes) == 0:
            return Detections.empty(size)
        cls = boxes.cls.cpu().numpy().astype(int)
        keep = np.array([c in self._class_of for c in cls], dtype=bool)
        dets = Detections(
            boxes.xyxy.cpu().numpy().astype(np.float32),
            boxes.conf.cpu().numpy().astype(np.float32),
            boxes.id.cpu().numpy().astype(np.int64),
            tuple(self._class_of.get(int(c), VehicleClass.CAR) for c in cls),
            size,
        )
        return dets.select(keep)
