"""`gatewatch replay`: a clip through the full edge pipeline, with a progress bar and summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from edge import EdgeError
from edge.config import UnitConfig
from edge.devtools.annotate import VideoAnnotator
from edge.devtools.records_io import RecordWriter
from edge.pipeline import Pipeline, build_pipeline, replay_start
from edge.stages.capture import FileSource, LiveSource, open_source
from wire.payloads import WindowRecord


def run_replay(
    cfg: UnitConfig, *, out: Path | None, video_out: Path | None, console: Console, fps: float | None = None
) -> list[WindowRecord]:
    if fps is not None and fps <= 0:
        raise EdgeError(f"--fps must be positive, got {fps:g}")
    if fps is not None and cfg.source.kind != "file":
        raise EdgeError("--fps simulates a slower unit on a recorded file; a live source is processed as fast "
                        "as this machine keeps up, newest frame first")
    source = open_source(cfg.source, replay_start(cfg), cfg.model.vid_stride, rate=fps)
    pipe = build_pipeline(cfg, source=source)
    if isinstance(source, LiveSource):
        source.wait_open(cfg.source.open_timeout_s)
    total = source.expected_frames if isinstance(source, FileSource) else None
    out_fps = min(fps, source.fps) if fps else source.fps / cfg.model.vid_stride
    annotator = VideoAnnotator(video_out, cfg, out_fps) if video_out else None
    bar = tqdm(total=total, unit="frame", desc=Path(cfg.source.path or "").name, disable=None)

    def on_frame_all(*args: Any) -> None:
        bar.update(1)
        if annotator is not None:
            annotator(*args)

    pipe.on_frame = on_frame_all
    writer = RecordWriter(out) if out else None
    records: list[WindowRecord] = []
    try:
        for record in pipe.records():
            records.append(record)
            if writer:
                writer.write(record)
    finally:
        bar.close()
        pipe.close()
        if writer:
            writer.close()
        if annotator:
            annotator.close()
    print_summary(pipe, records, console, out, video_out)
    return records


def print_summary(
    pipe: Pipeline, records: list[WindowRecord], console: Console, out: Path | None, video_out: Path | None
) -> None:
    s = pipe.stats
    console.print(summary_table(pipe.totals, f"counts: {pipe.cfg.gate}/{pipe.cfg.unit}"))
    console.print(
        f"{s.frames} frames, {s.fps:.1f} frames/s (decode {s.mean_ms('decode'):.1f} ms, inference "
        f"{s.mean_ms('inference'):.1f} ms, tracking {s.mean_ms('tracking'):.1f} ms, counting "
        f"{s.mean_ms('counting'):.2f} ms per frame); {len(records)} window records"
    )
    if out:
        console.print(f"records: {out}")
    if video_out:
        console.print(f"annotated video: {video_out}")


def summary_table(totals: dict[tuple[str, str, str], int], title: str) -> Table:
    table = Table(title=title)
    for col in ("lane", "direction", "class", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for (lane, cls, direction), n in sorted(totals.items()):
        table.add_row(lane, direction, cls, str(n))
    table.add_row("all", "", "", str(sum(totals.values())), style="bold")
    return table
