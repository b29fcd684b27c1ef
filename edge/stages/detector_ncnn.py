"""YOLOv8 through NCNN (Tencent's inference library, fastest on the Pi's Arm cores): no torch.

The model is the vehicle-only NCNN export (edge/devtools/export.py): a folder with model.ncnn.param,
model.ncnn.bin and ultralytics' metadata.yaml (class names, input size). NCNN exports have a fixed
input shape (anchors are baked in), so frames are letterboxed to exactly that shape.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from edge.config import ModelConfig
from edge.stages.detections import Boxes
from edge.stages.detector import Frame, ModelError, check_model_path
from edge.stages.yolo import decode, gate_classes, letterbox


class NcnnDetector:
    def __init__(self, cfg: ModelConfig, threads: int | None = None) -> None:
        import ncnn

        self.cfg = cfg
        folder = check_model_path(cfg.path)
        param = Path(folder) / "model.ncnn.param"
        try:
            meta = yaml.safe_load((Path(folder) / "metadata.yaml").read_text())
            names: dict[int, str] = {int(k): str(v) for k, v in meta["names"].items()}
            h, w = (int(x) for x in meta["imgsz"])
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{folder} is not an ultralytics NCNN export (metadata.yaml): {exc}") from exc
        self._shape = (h, w)
        self._class_of = gate_classes(names, cfg.class_map)
        if not self._class_of:
            raise ModelError(f"model {folder} has none of the classes {sorted(cfg.class_map)}")
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads or os.cpu_count() or 1
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(param.with_suffix(".bin"))) != 0:
            raise ModelError(f"cannot load NCNN model {folder}")
        self._in = self.net.input_names()[0]
        self._out = sorted(self.net.output_names())[0]
        self._mat = ncnn.Mat

    def detect(self, frame: Frame) -> Boxes:
        blob, lb = letterbox(frame, self._shape)
        with self.net.create_extractor() as ex:
            ex.input(self._in, self._mat(np.ascontiguousarray(blob[0])))
            _, out = ex.extract(self._out)
        return decode(np.asarray(out, np.float32), lb, self._class_of, self.cfg.conf, self.cfg.iou)
