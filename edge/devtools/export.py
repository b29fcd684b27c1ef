"""Export the vehicle-only model to faster formats (ONNX, NCNN, TFLite) for the Pi and benchmarks.

Exports are written to a cache folder, never beside the source weights (the shared test models
are read-only and production weights are verified by sha256 and must stay untouched).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from edge import EdgeError
from edge.config import DEFAULT_CLASS_MAP
from edge.stages.detector import check_model_path

log = logging.getLogger(__name__)
FORMATS = {"pt": None, "onnx": ".onnx", "ncnn": "_ncnn_model", "tflite": ".tflite", "openvino": "_openvino_model"}


def default_export_dir() -> Path:
    return Path(os.environ.get("GATEWATCH_EXPORT_DIR", Path.home() / ".cache" / "gatewatch" / "models"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_model(weights: Path, fmt: str, imgsz: int, out_dir: Path | None = None) -> Path:
    """Return a path to `weights` in format `fmt` at `imgsz`, exporting once and reusing after.

    The vehicle-only head is cut before export, so exported models score vehicles only.
    """
    check_model_path(weights)
    if fmt == "pt":
        return weights
    if fmt not in FORMATS:
        raise EdgeError(f"unknown export format {fmt!r}; choose from {sorted(FORMATS)}")
    out_dir = out_dir or default_export_dir()
    stem = f"{weights.stem}-{sha256(weights)[:8]}-vehicles-{imgsz}"
    target = out_dir / f"{stem}{FORMATS[fmt]}"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f"{stem}.pt"
    if not work.exists():
        shutil.copyfile(weights, work)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO  # type: ignore[attr-defined]

    from edge.stages.detector_ultralytics import restrict_head

    model = YOLO(str(work), task="detect")
    restrict_head(model, list(DEFAULT_CLASS_MAP))
    log.info("exporting %s to %s at %s", weights.name, fmt, imgsz)
    try:
        produced = Path(model.export(format=fmt, imgsz=imgsz, dynamic=False, simplify=True, verbose=False))
    except Exception as exc:  # exporters raise anything from ImportError to RuntimeError
        raise EdgeError(f"export to {fmt} failed: {exc}") from exc
    if produced != target:
        shutil.move(str(produced), str(target))
    return target


def main() -> None:
    import sys

    if len(sys.argv) != 4:
        sys.exit("usage: python -m edge.devtools.export WEIGHTS FORMAT IMGSZ")
    try:
        print(export_model(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
    except EdgeError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
