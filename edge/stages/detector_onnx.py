"""YOLOv8 through ONNX Runtime: no torch, about a third of the memory of the ultralytics path.

The model is the vehicle-only export (edge/stages/export.py). Exported with dynamic axes it takes
the same minimal-padding input ultralytics gives a `.pt` (e.g. 288x480 for a 16:9 frame at imgsz 480),
so it sees what the `.pt` sees at less cost than a square; a fixed-shape export gets its own shape.
"""

from __future__ import annotations

import ast
import os

import numpy as np

from edge.config import ModelConfig
from edge.stages.detections import Boxes
from edge.stages.detector import Frame, ModelError, check_model_path
from edge.stages.yolo import decode, gate_classes, input_shape, letterbox


class OnnxDetector:
    def __init__(self, cfg: ModelConfig, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.cfg = cfg
        path = check_model_path(cfg.path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spinning. A unit's cores are never the detector's alone (the
        # frame reader, the tracker, the publisher, mosquitto on a single-box gate): with spinning on, a
        # second busy process halved ONNX Runtime's frames/s on this 2-core machine (14 vs 29 frames/s on
        # degirum_Traffic.mp4 beside a nice-19 process); with it off, an idle machine runs as fast (43-46).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # no warnings about unused initialisers on every start
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ModelError(f"cannot load ONNX model {path}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            names: dict[int, str] = ast.literal_eval(meta["names"])
            self.stride = int(meta.get("stride", 32))
        except (KeyError, ValueError, SyntaxError) as exc:
            raise ModelError(f"{path} has no ultralytics class names in its metadata: export it with gatewatch") from (
                exc
            )
        self._class_of = gate_classes(names, cfg.class_map)
        if not self._class_of:
            raise ModelError(f"model {path} has none of the classes {sorted(cfg.class_map)}")
        (inp,) = self.session.get_inputs()
        self._input = inp.name
        h, w = inp.shape[2:4]
        # dynamic axes are named strings; a fixed export has its shape in the graph
        self._fixed = (int(h), int(w)) if isinstance(h, int) and isinstance(w, int) else None

    def detect(self, frame: Frame) -> Boxes:
        shape = self._fixed or input_shape(frame.shape[:2], self.cfg.imgsz, self.stride)
        blob, lb = letterbox(frame, shape)
        (pred,) = self.session.run(None, {self._input: blob})
        return decode(np.asarray(pred[0], np.float32), lb, self._class_of, self.cfg.conf, self.cfg.iou)
