"""YOLO detection and ultralytics' own trackers: the only module that imports ultralytics (and so torch).

Why ultralytics for the `.pt` model: it loads every format it exports, and its ByteTrack is
maintained with the models. The detector runs `predict` exactly as `track` would (class-agnostic
NMS over the vehicle classes), and `UltralyticsBoxTracker` feeds the boxes to the same BYTETracker
class `track(persist=True)` uses, so the detector/tracker split counts exactly as `track` did.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from edge.config import ModelConfig
from edge.stages.detections import VEHICLE_CLASSES, Boxes, Detections
from edge.stages.detector import Frame, ModelError, check_model_path
from edge.stages.tracking import TrackerError
from wire.payloads import VehicleClass

log = logging.getLogger(__name__)


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


class UltralyticsDetector:
    """Any model ultralytics loads (.pt, ONNX, NCNN, TFLite...) through its own pre/post-processing."""

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

    def detect(self, frame: Frame) -> Boxes:
        results = self.model.predict(
            frame,
            imgsz=self.cfg.imgsz,
            conf=self.cfg.conf,
            iou=self.cfg.iou,
            classes=self._classes,
            agnostic_nms=True,  # one vehicle, one box: a truck also scored 'car' must not become two tracks
            verbose=False,
        )
        h, w = frame.shape[:2]
        boxes = results[0].boxes
        if boxes is None or len(boxes) == 0:
            return Boxes.empty((w, h))
        cls = boxes.cls.cpu().numpy().astype(int)
        keep = np.array([c in self._class_of for c in cls], dtype=bool)
        found = Boxes(
            boxes.xyxy.cpu().numpy().astype(np.float32),
            boxes.conf.cpu().numpy().astype(np.float32),
            tuple(self._class_of.get(int(c), VehicleClass.CAR) for c in cls),
            (w, h),
        )
        return found.select(keep)


class UltralyticsBoxTracker:
    """ultralytics' own trackers (BYTETracker, BOTSORT) behind the `BoxTracker` seam, fed and read
    exactly as `model.track(persist=True)` feeds and reads them."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import IterableSimpleNamespace

        kind = settings.get("tracker_type")
        if kind not in TRACKER_MAP:
            raise TrackerError(f"ultralytics has no tracker {kind!r}; it has {sorted(TRACKER_MAP)}")
        try:
            self.tracker: Any = TRACKER_MAP[kind](args=IterableSimpleNamespace(**settings))
        except (AttributeError, TypeError) as exc:  # a setting the tracker needs is missing
            raise TrackerError(f"tracker settings for {kind} are incomplete: {exc}") from exc

    @classmethod
    def bundled(cls, name: str) -> UltralyticsBoxTracker:
        """One of the tracker configs that ship with ultralytics (`bytetrack.yaml`, `botsort.yaml`)."""
        from ultralytics.utils import YAML
        from ultralytics.utils.checks import check_yaml

        try:
            settings = YAML.load(check_yaml(name))  # type: ignore[no-untyped-call]
        except Exception as exc:  # FileNotFoundError, or ultralytics' own errors for a bad name
            raise TrackerError(f"no tracker settings {name!r} in edge/stages/trackers or ultralytics: {exc}") from exc
        return cls(settings)

    def reset(self) -> None:
        self.tracker.reset()

    def update(self, boxes: Boxes, frame: Frame, t: float) -> Detections:
        from ultralytics.engine.results import Boxes as UBoxes

        w, h = boxes.frame_size
        data = np.column_stack([boxes.xyxy, boxes.confidence, boxes.class_ids()]).astype(np.float32)
        tracks = self.tracker.update(UBoxes(data.reshape(-1, 6), (h, w)), frame)
        if len(tracks) == 0:
            return Detections.empty((w, h))
        # rows: x1, y1, x2, y2, track id, score, class, detection index
        return Detections(
            np.ascontiguousarray(tracks[:, :4], dtype=np.float32),
            tracks[:, 5].astype(np.float32),
            tracks[:, 4].astype(np.int64),
            tuple(VEHICLE_CLASSES[int(c)] for c in tracks[:, 6]),
            (w, h),
        )
