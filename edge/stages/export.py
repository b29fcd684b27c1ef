"""Export the vehicle-only model to faster formats (ONNX, NCNN, TFLite) for the Pi and benchmarks,
cached so it happens once per model and setting.

Two halves. `export_model` does the export and needs torch (ultralytics); it runs in its own process
(`python -m edge.stages.export`). `cached_export` is what a counting process calls: it only looks
up the cache and, on a miss, runs that process, so the counting process never imports torch.

The cache key is the weights' sha256 plus every export setting (format, input size, dynamic axes,
classes kept, the export recipe's version), so a changed model or setting never reuses a stale file.
A finished entry has a manifest (sha256 of every file it holds) written last: an entry without one,
or whose files no longer match it (an export killed half-way, a damaged disk), is rebuilt.
Exports are written to a cache folder, never beside the source weights (the shared test models are
read-only and production weights are verified by sha256 and must stay untouched).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge import EdgeError
from edge.config import DEFAULT_CLASS_MAP

log = logging.getLogger(__name__)
FORMATS = {"pt": None, "onnx": ".onnx", "onnx-int8": ".int8.onnx", "ncnn": "_ncnn_model", "tflite": ".tflite",
           "openvino": "_openvino_model"}
#: bump when the way an export is made changes, so old cache entries are not reused
RECIPE = 2


class ExportError(EdgeError):
    """An export failed, or its cache cannot be written."""


def default_export_dir() -> Path:
    return Path(os.environ.get("GATEWATCH_EXPORT_DIR", Path.home() / ".cache" / "gatewatch" / "models"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_settings(fmt: str, imgsz: int, calibration: Path | None = None) -> dict[str, object]:
    """Everything besides the weights that decides what an export contains (for int8, the calibration
    footage's bytes: another clip gives other activation ranges)."""
    settings: dict[str, object] = {
        "format": fmt,
        "imgsz": imgsz,
        # ONNX Runtime takes any input shape: dynamic axes let it run the minimal-padding
        # rectangle a .pt runs. NCNN and TFLite exports bake the anchors for one shape.
        "dynamic": fmt in ("onnx", "onnx-int8"),
        "classes": sorted(DEFAULT_CLASS_MAP),
        "recipe": RECIPE,
    }
    if fmt == "onnx-int8":
        from edge.stages.quantize import CALIBRATION_FRAMES, CalibrationError, calibration_digest

        if calibration is None:
            raise ExportError("model.format onnx-int8 needs model.calibration: a clip (or a folder of clips or "
                              "images) from the unit's camera, whose frames fix the int8 activation ranges")
        try:
            settings["calibration"] = calibration_digest(calibration)
        except (CalibrationError, OSError) as exc:
            raise ExportError(f"model.calibration: {exc}") from exc
        settings["calibration_frames"] = CALIBRATION_FRAMES
    return settings


def cache_entry(
    weights: Path, fmt: str, imgsz: int, out_dir: Path, digest: str | None = None, calibration: Path | None = None,
) -> Path:
    if fmt not in FORMATS or fmt == "pt":
        raise ExportError(f"unknown export format {fmt!r}; choose from {sorted(set(FORMATS) - {'pt'})}")
    key = hashlib.sha256(
        json.dumps([digest or sha256(weights), export_settings(fmt, imgsz, calibration)], sort_keys=True).encode()
    ).hexdigest()[:12]
    return out_dir / f"{weights.stem}-vehicles-{imgsz}-{key}{FORMATS[fmt]}"


def _manifest(entry: Path) -> Path:
    return entry.with_name(entry.name + ".manifest.json")


def _files(entry: Path) -> list[Path]:
    return sorted(p for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else [entry]


def entry_is_complete(entry: Path) -> bool:
    """The entry exists and every file matches the manifest written when its export finished."""
    try:
        recorded = json.loads(_manifest(entry).read_text())["files"]
        files = _files(entry)
        if not entry.exists() or sorted(recorded) != sorted(str(p.relative_to(entry.parent)) for p in files):
            return False
        return all(recorded[str(p.relative_to(entry.parent))] == sha256(p) for p in files)
    except (OSError, ValueError, TypeError, KeyError):
        return False


def export_model(
    weights: Path, fmt: str, imgsz: int, out_dir: Path | None = None, calibration: Path | None = None,
) -> Path:
    """Return a path to `weights` in format `fmt` at `imgsz`, exporting once and reusing after.

    Needs torch: call it in a process of its own (see `cached_export`). The vehicle-only head is cut
    before export, so exported models score vehicles only.
    """
    from edge.stages.detector import check_model_path

    check_model_path(weights)
    if fmt == "pt":
        return weights
    out_dir = out_dir or default_export_dir()
    digest = sha256(weights)
    target = cache_entry(weights, fmt, imgsz, out_dir, digest, calibration)
    if entry_is_complete(target):
        return target
    fp32 = export_model(weights, "onnx", imgsz, out_dir) if fmt == "onnx-int8" else None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        work_dir = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    except OSError as exc:
        raise ExportError(f"cannot write the export cache {out_dir}: {exc.strerror or exc}") from exc
    try:
        settings = export_settings(fmt, imgsz, calibration)
        log.info("exporting %s to %s at %s", weights.name, fmt, imgsz)
        if fp32 is not None and calibration is not None:
            # int8 starts from the cached fp32 export: no weights copy, no ultralytics (torch) import
            produced = _quantize(fp32, calibration, imgsz, work_dir / "model.int8.onnx")
        else:
            work = work_dir / f"{weights.stem}.pt"
            shutil.copyfile(weights, work)
            os.environ.setdefault("YOLO_OFFLINE", "1")
            from ultralytics import YOLO  # type: ignore[attr-defined]

            from edge.stages.detector_ultralytics import restrict_head

            model = YOLO(str(work), task="detect")
            restrict_head(model, list(DEFAULT_CLASS_MAP))
            try:
                produced = Path(model.export(
                    format=fmt, imgsz=imgsz, dynamic=bool(settings["dynamic"]), simplify=True, verbose=False,
                ))
            except Exception as exc:  # exporters raise anything from ImportError to RuntimeError
                raise ExportError(f"export to {fmt} failed: {exc}") from exc
        # replace a damaged entry only now that a good one exists; the manifest goes last
        _manifest(target).unlink(missing_ok=True)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        shutil.move(str(produced), str(target))
        manifest = {
            "weights": weights.name,
            "weights_sha256": digest,
            "settings": settings,
            "files": {str(p.relative_to(target.parent)): sha256(p) for p in _files(target)},
        }
        tmp = _manifest(target).with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.replace(_manifest(target))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return target


def _quantize(fp32: Path, calibration: Path, imgsz: int, out: Path) -> Path:
    from edge.stages.quantize import CalibrationError, quantize_export

    try:
        frames = quantize_export(fp32, calibration, imgsz, out)
    except CalibrationError as exc:
        raise ExportError(f"model.calibration: {exc}") from exc
    except Exception as exc:  # onnxruntime.quantization raises whatever its passes raise
        raise ExportError(f"int8 quantisation of {fp32.name} failed: {exc}") from exc
    log.info("quantised %s on %d calibration frames of %s", fp32.name, frames, calibration)
    return out


def cached_export(
    weights: Path, fmt: str, imgsz: int, out_dir: Path | None = None, calibration: Path | None = None,
) -> Path:
    """The cached export of `weights`, made first (in a subprocess that imports torch) if missing.

    A counting process calls this: on a cache hit it reads only the cache; on a miss it prints one
    progress line, waits for the export process and checks what it produced.
    """
    from edge.stages.detector import check_model_path

    check_model_path(weights)
    out_dir = out_dir or default_export_dir()
    target = cache_entry(weights, fmt, imgsz, out_dir, calibration=calibration)
    if entry_is_complete(target):
        return target
    try:  # a read-only cache fails here, in one line, not deep inside the exporter
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as exc:
        raise ExportError(
            f"the model export cache {out_dir} is not writable ({exc.strerror or exc}) and has no {fmt} export "
            f"of {weights.name} at {imgsz}: make it writable, set GATEWATCH_EXPORT_DIR, or set model.path to an export"
        ) from exc
    state = "damaged, re-exporting" if target.exists() else "first use"
    print(
        f"gatewatch: exporting {weights.name} to {fmt} at {imgsz} ({state}; once, then cached in {out_dir})...",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "edge.stages.export", str(weights), fmt, str(imgsz), "--out-dir", str(out_dir)]
    if calibration is not None:
        cmd += ["--calibration", str(calibration)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "YOLO_OFFLINE": "1"})
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise ExportError(f"export of {weights.name} to {fmt} failed: {lines[-1] if lines else proc.returncode}")
    if not entry_is_complete(target):
        raise ExportError(f"export of {weights.name} to {fmt} left no complete cache entry at {target}")
    print(f"gatewatch: exported in {time.monotonic() - t0:.0f} s: {target}", file=sys.stderr, flush=True)
    return target


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edge.stages.export", description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("format", choices=sorted(set(FORMATS) - {"pt"}))
    parser.add_argument("imgsz", type=int)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--calibration", type=Path, default=None, help="footage for onnx-int8's activation ranges")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        print(export_model(args.weights, args.format, args.imgsz, args.out_dir, args.calibration))
    except EdgeError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
