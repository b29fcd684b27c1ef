"""int8 static quantisation of the vehicle-only ONNX export, calibrated on footage frames.

Why static int8: on the unit's CPU the convolutions are almost all of a frame's cost, and ONNX
Runtime's int8 kernels run them in 8-bit integer arithmetic. Activation ranges are fixed once from
real frames (static), so no range is computed per frame at run time.

Why these choices:
- Calibration frames come from footage the operator names (`model.calibration`): a camera's own
  clip is the best, since ranges follow its light and its compression. They are sampled evenly over
  the whole source, so a clip's dusk end counts as much as its bright start.
- The detection head's box decoding (the DFL softmax, the anchor arithmetic and the final concat)
  stays in float: quantising it moves box edges by whole pixels at 480, and a counting line is
  crossed by a box's reference point. Only its convolutions are quantised.
- QDQ format, per-channel weights, uint8 activations: what ONNX Runtime's CPU provider fuses into
  its integer convolution kernels on x86 (AVX2) and Arm (NEON dot products).

This runs in the export process (`edge.stages.export`), never in a counting process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.stages.yolo import input_shape, letterbox

#: frames sampled for calibration: enough that ranges settle (MinMax over ~100 frames changes <1 %),
#: few enough that calibrating takes a minute on 2 cores
CALIBRATION_FRAMES = 120
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class CalibrationError(ValueError):
    """The calibration footage is missing, unreadable or holds no frame."""


def calibration_files(source: Path) -> list[Path]:
    """The video or image files of a calibration source: one file, or every such file in a folder."""
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
        files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES or _is_video(p)]
        if files:
            return files
        raise CalibrationError(f"calibration folder {source} holds no image or video file")
    raise CalibrationError(f"calibration footage {source} does not exist")


def calibration_digest(source: Path) -> str:
    """sha256 over the calibration files' names and bytes: part of the int8 export's cache key."""
    h = hashlib.sha256()
    for path in calibration_files(source):
        h.update(path.name.encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _is_video(path: Path) -> bool:
    cap = cv2.VideoCapture(str(path))
    try:
        return bool(cap.isOpened()) and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 0
    finally:
        cap.release()


def sample_frames(source: Path, limit: int = CALIBRATION_FRAMES) -> list[np.ndarray]:
    """Up to `limit` frames spread evenly over every file of `source` (images count as one frame)."""
    files = calibration_files(source)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in files if p not in images]
    frames: list[np.ndarray] = []
    for path in images:
        img = cv2.imread(str(path))
        if img is not None:
            frames.append(img)
    share = max(1, (limit - len(frames)) // max(1, len(videos)))
    for path in videos:
        cap = cv2.VideoCapture(str(path))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        wanted = set(np.linspace(0, max(0, total - 1), num=min(share, max(1, total))).astype(int).tolist())
        i = 0
        while wanted:
            ok, frame = cap.read()
            if not ok:
                break
            if i in wanted:
                frames.append(frame)
                wanted.discard(i)
            i += 1
        cap.release()
    if not frames:
        raise CalibrationError(f"no frame could be read from the calibration footage {source}")
    return frames[:limit]


def _head_float_nodes(model_path: Path) -> list[str]:
    """The detection head's nodes other than its convolutions (the last `/model.N/` block): kept in float."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    blocks = {int(n.name.split("/")[1].split(".")[1]) for n in graph.node
              if n.name.startswith("/model.") and n.name.split("/")[1].split(".")[1].isdigit()}
    if not blocks:
        raise CalibrationError(f"{model_path} is not an ultralytics YOLO export (no /model.N/ nodes)")
    head = f"/model.{max(blocks)}/"
    return [n.name for n in graph.node if n.name.startswith(head) and n.op_type != "Conv"]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one letterboxed frame per call, as a unit feeds them."""

    def __init__(self, frames: list[np.ndarray], imgsz: int, input_name: str) -> None:
        self._blobs: Iterator[np.ndarray] = (letterbox(f, input_shape(f.shape[:2], imgsz))[0] for f in frames)
        self._name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        blob = next(self._blobs, None)
        return None if blob is None else {self._name: blob}

    def rewind(self) -> None:  # part of the protocol; one pass is all MinMax calibration needs
        return None


def quantize_export(fp32: Path, calibration: Path, imgsz: int, out: Path) -> int:
    """Write the int8 model for `fp32` (a dynamic-shape ONNX export) to `out`; return the frames used."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    frames = sample_frames(calibration)
    prepared = out.with_name(out.name + ".pre.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        input_name = onnx.load(str(prepared)).graph.input[0].name
        quantize_static(
            str(prepared), str(out), _Reader(frames, imgsz, input_name),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=_head_float_nodes(prepared),
        )
    finally:
        prepared.unlink(missing_ok=True)
        for extra in out.parent.glob(out.name + ".pre*"):
            extra.unlink(missing_ok=True)
    # the runtime reads the class names, stride and input size from the export's metadata
    src, dst = onnx.load(str(fp32)), onnx.load(str(out))
    del dst.metadata_props[:]
    for prop in src.metadata_props:
        dst.metadata_props.append(prop)
    onnx.save(dst, str(out))
    return len(frames)
