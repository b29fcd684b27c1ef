"""YOLOv8 pre- and post-processing without torch: letterbox (cv2), head decode (numpy), class-agnostic
NMS (cv2.dnn.NMSBoxes).

Mirrors what ultralytics does for its own `predict` (LetterBox, non_max_suppression, scale_boxes), so
a torch-free runtime sees the same input and keeps the same boxes as the ultralytics path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge.stages.detections import Boxes
from wire.payloads import VehicleClass

PAD_VALUE = 114  # ultralytics' grey border
MAX_NMS = 30000  # boxes into NMS at most, highest confidence first (as ultralytics)
MAX_DET = 300  # boxes out of NMS at most


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame was fitted into the model input: undo it to map boxes back to frame pixels."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int
    frame_size: tuple[int, int]  # (width, height)


def input_shape(frame_hw: tuple[int, int], imgsz: int, stride: int = 32, rect: bool = True) -> tuple[int, int]:
    """Model input (height, width) for a frame: the long side at `imgsz`; with `rect`, the short side
    padded only up to a multiple of `stride` (as ultralytics runs a `.pt`), else a square."""
    if not rect:
        return imgsz, imgsz
    h, w = frame_hw
    r = min(imgsz / h, imgsz / w)
    nh, nw = max(round(h * r), 1), max(round(w * r), 1)
    return nh + (imgsz - nh) % stride, nw + (imgsz - nw) % stride


def letterbox(frame: npt.NDArray[np.uint8], shape: tuple[int, int]) -> tuple[npt.NDArray[np.float32], Letterbox]:
    """Resize keeping the aspect ratio, pad to `shape` (h, w), and make the NCHW float RGB blob in 0..1."""
    h, w = frame.shape[:2]
    r = min(shape[0] / h, shape[1] / w)
    nw, nh = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (shape[1] - nw) / 2, (shape[0] - nh) / 2
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else frame
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    blob = np.asarray(cv2.dnn.blobFromImage(img, 1 / 255.0, swapRB=True), np.float32)  # HWC BGR -> NCHW RGB
    return blob, Letterbox(nw / w, nh / h, left, top, (w, h))


def decode(
    pred: npt.NDArray[np.float32],
    lb: Letterbox,
    class_of: Mapping[int, VehicleClass],
    conf: float,
    iou: float,
) -> Boxes:
    """YOLOv8 head output (4 + classes, anchors): centre-size boxes in input pixels and one sigmoid
    score per class -> the best class per box, above `conf`, class-agnostic NMS, frame pixels."""
    pred = pred.reshape(pred.shape[-2], pred.shape[-1]) if pred.ndim == 3 else pred
    scores = pred[4:]
    cls = scores.argmax(0)
    best = scores[cls, np.arange(scores.shape[1])]
    keep = best > conf
    if class_of:
        keep &= np.isin(cls, np.fromiter(class_of, np.int64))
    if not keep.any():
        return Boxes.empty(lb.frame_size)
    xywh, best, cls = pred[:4, keep].T, best[keep], cls[keep]
    if len(best) > MAX_NMS:
        top = np.argsort(-best, kind="stable")[:MAX_NMS]
        xywh, best, cls = xywh[top], best[top], cls[top]
    xyxy = np.empty_like(xywh)
    xyxy[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
    xyxy[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
    tlwh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(tlwh.tolist(), best.tolist(), conf, iou)
    idx = np.asarray(kept, dtype=np.int64).reshape(-1)[:MAX_DET]
    xyxy, best, cls = xyxy[idx], best[idx], cls[idx]
    xyxy[:, [0, 2]] = ((xyxy[:, [0, 2]] - lb.pad_x) / lb.gain_x).clip(0, lb.frame_size[0])
    xyxy[:, [1, 3]] = ((xyxy[:, [1, 3]] - lb.pad_y) / lb.gain_y).clip(0, lb.frame_size[1])
    return Boxes(
        xyxy.astype(np.float32),
        best.astype(np.float32),
        tuple(class_of[int(c)] for c in cls),
        lb.frame_size,
    )


def gate_classes(names: Mapping[int, str], class_map: Mapping[str, VehicleClass]) -> dict[int, VehicleClass]:
    """Model class index -> gate class, for the model classes the unit's class map knows."""
    return {i: class_map[n] for i, n in names.items() if n in class_map}
