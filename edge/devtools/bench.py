"""`gatewatch bench`: frames/s, ms per stage and peak memory for each model format, image size
and frame stride, with the counts each setting gives on the ground-truth clips.

Each setting runs in a fresh process, so peak memory is that setting's own and no tracker
state or thread pool leaks from one run into the next.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from edge.config import ModelConfig
from edge.devtools.evaluation import EvalResult, read_ground_truth
from edge.paths import default_model, footage_dir, models_dir

TFLITE_IMGSZ = 640


@dataclass
class BenchRow:
    fmt: str
    imgsz: int
    stride: int
    source_fps: float
    processed_fps: float
    decode_ms: float
    inference_ms: float
    tracking_ms: float
    counting_ms: float
    peak_mb: float
    rows_ok: int
    rows: int
    counts: str


def _run_one(fmt: str, imgsz: int, stride: int, clips: list[str], export_dir: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    import torch

    from edge.devtools.evaluation import evaluate
    from edge.devtools.export import export_model
    from edge.stages.detector import Tracker, build_tracker

    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        if fmt == "tflite":
            # the shared int8 TFLite export (fixed 640 input); exporting TFLite here would need TensorFlow
            path = models_dir() / "yolov8n_int8.tflite"
            if imgsz != TFLITE_IMGSZ:
                queue.put(("error", f"tflite@{imgsz}: the int8 TFLite model has a fixed {TFLITE_IMGSZ} input"))
                return
        else:
            path = export_model(default_model(), fmt, imgsz, Path(export_dir))
        cfg = ModelConfig(path=path, imgsz=imgsz, vid_stride=stride)
        folder = footage_dir()
        rows = [r for r in read_ground_truth(folder / "ground_truth.csv") if r.video in clips]
        trackers: list[Tracker] = []

        def make(c: ModelConfig) -> Tracker:
            trackers.append(build_tracker(c))
            return trackers[0]

        t0 = time.perf_counter()
        results: list[EvalResult] = evaluate(folder, cfg, make, rows)
        elapsed = time.perf_counter() - t0
        queue.put(("ok", _summarise(fmt, imgsz, stride, results, elapsed)))
    except Exception as exc:  # report per setting, keep benchmarking the others
        queue.put(("error", f"{fmt}@{imgsz}/{stride}: {exc}"))


def _summarise(fmt: str, imgsz: int, stride: int, results: list[EvalResult], elapsed: float) -> BenchRow:
    per_clip = {r.row.video: r for r in results}
    processed = sum(r.frames for r in per_clip.values())
    source = sum(r.source_frames for r in per_clip.values())
    stages = ("decode", "inference", "tracking", "counting")
    stage = {k: sum(dict(r.stage_s)[k] for r in per_clip.values()) for k in stages}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = ", ".join(
        f"{r.row.video.split('_')[0]}{'/' + r.row.direction if r.row.video.startswith('opencv') else ''}"
        f" {r.total}/{r.row.total}"
        for r in results
    )
    per_frame = {k: stage[k] * 1000 / processed for k in stages}
    return BenchRow(
        fmt=fmt,
        imgsz=imgsz,
        stride=stride,
        source_fps=source / elapsed,
        processed_fps=processed / elapsed,
        decode_ms=per_frame["decode"],
        inference_ms=per_frame["inference"],
        tracking_ms=per_frame["tracking"],
        counting_ms=per_frame["counting"],
        peak_mb=peak,
        rows_ok=sum(r.ok for r in results),
        rows=len(results),
        counts=counts,
    )


def run_bench(
    clips: list[Path] | None,
    formats: list[str],
    sizes: list[int],
    strides: list[int],
    export_dir: Path,
    console: Console,
) -> list[BenchRow]:
    folder = footage_dir()
    names = sorted({r.video for r in read_ground_truth(folder / "ground_truth.csv")})
    if clips:
        names = [c.name for c in clips]
    ctx = mp.get_context("spawn")
    rows: list[BenchRow] = []
    settings = [(f, s, k) for f in formats for s in sizes for k in strides]
    for fmt, size, stride in tqdm(settings, desc="bench", unit="setting", disable=None):
        queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        proc = ctx.Process(target=_run_one, args=(fmt, size, stride, names, str(export_dir), queue))
        proc.start()
        status, payload = queue.get()
        proc.join()
        if status == "ok":
            rows.append(payload)
        else:
            console.print(f"[yellow]skipped[/] {payload}")
    if not console.is_terminal:
        console.width = 220  # logs and docs want the whole table, not an 80-column squeeze
    console.print(bench_table(rows))
    return rows


def bench_table(rows: list[BenchRow]) -> Table:
    table = Table(title="edge pipeline benchmark (source frames/s = camera frames handled per second)")
    for col in (
        "format",
        "imgsz",
        "stride",
        "source fps",
        "processed fps",
        "decode ms",
        "infer ms",
        "track ms",
        "count ms",
        "peak MB",
        "rows ok",
        "counts (got/hand)",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.fmt,
            str(r.imgsz),
            str(r.stride),
            f"{r.source_fps:.1f}",
            f"{r.processed_fps:.1f}",
            f"{r.decode_ms:.1f}",
            f"{r.inference_ms:.1f}",
            f"{r.tracking_ms:.1f}",
            f"{r.counting_ms:.2f}",
            f"{r.peak_mb:.0f}",
            f"{r.rows_ok}/{r.rows}",
            r.counts,
        )
    return table
