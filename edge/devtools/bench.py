"""`gatewatch bench`: frames/s, ms per stage and peak memory for each model format, image size
and frame stride, with the counts each setting gives on the ground-truth clips; and, with
`--peer`, gatewatch's default path against Ultralytics' ObjectCounter clip by clip.

Each setting runs in a fresh process, so peak memory is that setting's own and no tracker
state or thread pool leaks from one run into the next. With `--peer` the two alternate clip by
clip in the same invocation: these machines drift by 30 % or more from hour to hour, so only a
ratio measured side by side means anything.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any, cast

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from edge.config import ModelConfig
from edge.devtools.truth import CSV_CLASS, EvalResult, read_ground_truth
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


def unscored_footage(folder: Path, into: Path) -> Path:
    """A folder of links to the shared footage that no ground-truth row scores: int8 is calibrated on
    it by default, so no clip is counted by a model whose ranges were fixed on that clip's own frames."""
    scored = {r.video for r in read_ground_truth(folder / "ground_truth.csv")}
    into.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name not in scored and path.suffix.lower() in {".mp4", ".avi", ".jpg", ".png"}:
            link = into / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
    return into


def _run_one(
    fmt: str, imgsz: int, stride: int, clips: list[str], export_dir: str, calibration: str | None,
    queue: mp.Queue,  # type: ignore[type-arg]
) -> None:
    from edge.devtools.evaluation import evaluate
    from edge.stages.detector import Tracker
    from edge.stages.export import cached_export
    from edge.stages.runtimes import build_tracker

    try:
        if fmt == "tflite":
            # the shared int8 TFLite export (fixed 640 input); exporting TFLite here would need TensorFlow
            path = models_dir() / "yolov8n_int8.tflite"
            if imgsz != TFLITE_IMGSZ:
                queue.put(("error", f"tflite@{imgsz}: the int8 TFLite model has a fixed {TFLITE_IMGSZ} input"))
                return
        elif fmt == "pt":
            path = default_model()
        else:
            # exported in a process of its own: this one's peak memory is the unit's, without torch
            path = cached_export(default_model(), fmt, imgsz, Path(export_dir),
                                 calibration=Path(calibration) if calibration else None)
        cfg = ModelConfig(path=path, imgsz=imgsz, vid_stride=stride, format="pt" if fmt == "pt" else "auto")
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


def _in_child(ctx: Any, target: Callable[..., None], args: tuple[Any, ...]) -> tuple[str, Any]:
    """Run `target(*args, queue)` in a fresh process and return what it put on the queue; a child that
    dies without reporting (killed, out of memory, a crash in native code) is an error, not a hang."""
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    try:
        while True:
            try:
                return cast(tuple[str, Any], queue.get(timeout=1.0))
            except Empty:
                if not proc.is_alive():
                    try:  # it may have reported just before it exited
                        return cast(tuple[str, Any], queue.get(timeout=1.0))
                    except Empty:
                        return "error", f"{target.__name__}{args}: the process died (exit code {proc.exitcode})"
    finally:
        proc.join()


def run_bench(
    clips: list[Path] | None,
    formats: list[str],
    sizes: list[int],
    strides: list[int],
    export_dir: Path,
    console: Console,
    calibration: Path | None = None,
) -> list[BenchRow]:
    folder = footage_dir()
    names = sorted({r.video for r in read_ground_truth(folder / "ground_truth.csv")})
    if clips:
        names = [c.name for c in clips]
    ctx = mp.get_context("spawn")
    rows: list[BenchRow] = []
    settings = [(f, s, k) for f in formats for s in sizes for k in strides]
    if "onnx-int8" in formats and calibration is None:
        calibration = unscored_footage(folder, export_dir / "calibration-unscored")
    for fmt, size, stride in tqdm(settings, desc="bench", unit="setting", disable=None):
        status, payload = _in_child(ctx, _run_one, (fmt, size, stride, names, str(export_dir),
                                                   str(calibration) if calibration else None))
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


@dataclass
class PeerRun:
    """One clip through one counter, in a process of its own."""

    who: str
    clip: str
    frames: int
    wall_s: float
    peak_mb: float
    startup_s: float
    results: list[EvalResult]

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0


def _run_side(who: str, clip: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    """Child process: count `clip` with gatewatch's default path or with the peer; report speed,
    memory, start-up (process start to first processed frame) and counts."""
    import psutil

    started = psutil.Process().create_time()
    first: list[float] = []

    def tick() -> None:
        if not first:
            first.append(time.time())

    try:
        folder = footage_dir()
        rows = [r for r in read_ground_truth(folder / "ground_truth.csv") if r.video == clip]
        if who == "gatewatch":
            from edge.devtools.evaluation import evaluate
            from edge.pipeline import make_tracker

            results = evaluate(folder, ModelConfig(path=default_model()), make_tracker, rows, on_frame=tick)
        else:
            from edge.devtools.peer import peer_evaluate

            results = peer_evaluate(folder, default_model(), rows, on_frame=tick)
        runs = {(r.row.video, r.row.line): r for r in results}
        queue.put(("ok", PeerRun(
            who, clip, sum(r.frames for r in runs.values()), sum(r.wall_s for r in runs.values()),
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, (first[0] - started) if first else 0.0,
            results,
        )))
    except Exception as exc:  # report, keep benchmarking the other clips
        queue.put(("error", f"{who} on {clip}: {type(exc).__name__}: {exc}"))


def run_peer_bench(clips: list[Path] | None, console: Console) -> list[tuple[PeerRun, PeerRun]]:
    """gatewatch's default path and the peer, alternating clip by clip in one invocation."""
    folder = footage_dir()
    names = sorted({r.video for r in read_ground_truth(folder / "ground_truth.csv")})
    if clips:
        names = [c.name for c in clips]
    ctx = mp.get_context("spawn")
    pairs: list[tuple[PeerRun, PeerRun]] = []
    for clip in tqdm(names, desc="bench --peer", unit="clip", disable=None):
        pair: list[PeerRun] = []
        for who in ("gatewatch", "peer"):
            status, payload = _in_child(ctx, _run_side, (who, clip))
            if status != "ok":
                console.print(f"[yellow]skipped[/] {payload}")
                break
            pair.append(payload)
        if len(pair) == 2:
            pairs.append((pair[0], pair[1]))
    if not console.is_terminal:
        console.width = 220
    console.print(peer_table(pairs))
    return pairs


def _counts(r: EvalResult) -> str:
    classes = " ".join(f"{CSV_CLASS[c][0]}{n}" for c, n in r.by_class.items() if n)
    text = f"{r.total} ({classes})" if classes else str(r.total)
    return text if r.ok else f"[red]{text}[/]"


def peer_table(pairs: list[tuple[PeerRun, PeerRun]]) -> Table:
    table = Table(title="gatewatch (default path) vs Ultralytics ObjectCounter (yolov8n.pt, 640, ByteTrack), "
                        "same run, clip by clip")
    for col in ("clip", "dir", "hand", "gatewatch", "peer", "gatewatch fps", "peer fps", "ratio",
                "gatewatch MB", "peer MB", "start s (gw / peer)"):
        table.add_column(col)
    for ours, theirs in pairs:
        for i, (a, b) in enumerate(zip(ours.results, theirs.results, strict=True)):
            speed = (f"{ours.fps:.1f}", f"{theirs.fps:.1f}", f"{ours.fps / theirs.fps:.2f}x" if theirs.fps else "",
                     f"{ours.peak_mb:.0f}", f"{theirs.peak_mb:.0f}",
                     f"{ours.startup_s:.1f} / {theirs.startup_s:.1f}") if i == 0 else ("",) * 6
            hand = "-" if a.row.total is None else str(a.row.total)
            table.add_row(a.row.video, a.row.direction, f"{hand}±{a.row.tolerance}", _counts(a), _counts(b), *speed)
    if pairs:
        ours_fps = sum(o.frames for o, _ in pairs) / sum(o.wall_s for o, _ in pairs)
        peer_fps = sum(p.frames for _, p in pairs) / sum(p.wall_s for _, p in pairs)
        ok = sum(r.ok for o, _ in pairs for r in o.results), sum(r.ok for _, p in pairs for r in p.results)
        n = sum(len(o.results) for o, _ in pairs)
        table.add_row("all clips", "", "", f"{ok[0]}/{n} rows ok", f"{ok[1]}/{n} rows ok", f"{ours_fps:.1f}",
                      f"{peer_fps:.1f}", f"{ours_fps / peer_fps:.2f}x", "", "", "", style="bold")
    return table
