"""Edge commands: replay a clip, check accuracy against ground truth, benchmark, validate config.

Every command runs inside `common.cli.guarded`: expected failures (bad config, missing model,
unreadable video, camera that never opens) are one `error:` line on stderr and the exit code
of their kind (common.errors).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from common.cli import fail, guarded
from common.errors import EXIT_FAILURE, UsageError
from edge.service.cli import register_runtime

console = Console()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def replay(
    video: Annotated[str, typer.Argument(help="recorded clip, or a live source to tune on: rtsp://..., "
                                         "http://..., usb:N")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="unit config YAML (default: one lane across the middle of the frame)"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write window records here (.jsonl or .csv)")] = None,
    video_out: Annotated[Path | None, typer.Option(help="write an annotated video here (.mp4)")] = None,
    model: Annotated[Path | None, typer.Option(help="model path (overrides the config)")] = None,
    start: Annotated[datetime | None, typer.Option(help="wall-clock time of the first frame (UTC)")] = None,
    realtime: Annotated[bool, typer.Option(help="pace frames at recorded speed")] = False,
    fps: Annotated[
        float | None,
        typer.Option(help="process at this many frames/s of video, dropping frames exactly as a unit that "
                     "slow does (see docs/edge-pipeline.md for a Pi 4's and a Pi 5's rates)"),
    ] = None,
    validate_config: Annotated[
        bool, typer.Option("--validate-config", help="check the config and exit")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Replay a clip through the edge pipeline: counts summary, window records, annotated video."""
    _setup_logging(verbose)

    def body() -> None:
        from edge.devtools.defaults import load_replay_config
        from edge.devtools.replay import run_replay

        cfg = load_replay_config(video, config, model, start, realtime)
        if validate_config:
            console.print(f"config OK: gate {cfg.gate}, unit {cfg.unit}, {len(cfg.lanes)} lane(s)")
            return
        run_replay(cfg, out=out, video_out=video_out, console=console, fps=fps)

    guarded(body)


def evaluate_cmd(
    footage: Annotated[Path | None, typer.Option(help="folder with ground_truth.csv and the clips")] = None,
    model: Annotated[Path | None, typer.Option(help="model path (default: shared yolov8n.pt)")] = None,
    imgsz: Annotated[int | None, typer.Option(help="inference image size")] = None,
    stride: Annotated[int | None, typer.Option(help="process every n-th frame")] = None,
    fps: Annotated[
        float | None, typer.Option(help="process at this many frames/s, dropping frames as a slow unit does")
    ] = None,
    conditions: Annotated[
        str | None,
        typer.Option(help="a matrix over conditions: all, or some of clean,fps10,fps5,dark,gray,jpeg,half"),
    ] = None,
    peer: Annotated[
        bool, typer.Option(help="also run Ultralytics' ObjectCounter (yolov8n.pt, 640, ByteTrack) the same way")
    ] = False,
    clip: Annotated[list[str] | None, typer.Option(help="only this clip (file name; repeatable)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Count every clip in ground_truth.csv and compare with the hand counts (optionally under the
    conditions a gate unit really sees, beside the peer)."""
    _setup_logging(verbose)

    def body() -> None:
        from edge.devtools.conditions import CONDITIONS, at_rate, parse_conditions
        from edge.devtools.evaluation import print_matrix, print_results, run_eval

        if conditions is not None and fps is not None:
            raise UsageError("give --conditions or --fps, not both (the conditions include fps10 and fps5)")
        chosen = parse_conditions(conditions) if conditions is not None else [
            at_rate(fps) if fps is not None else CONDITIONS["clean"]
        ]
        runs = run_eval(footage, model, imgsz, stride, chosen, peer, clip)
        if conditions is None:
            for who, matrix in runs.items():
                print_results(next(iter(matrix.values())), console, f"{who}: counted vs hand-counted "
                              f"({chosen[0].description})")
        else:
            print_matrix(runs, console)
        ours = [r for results in runs["gatewatch"].values() for r in results]
        bad = [r for r in ours if not r.ok]
        if bad:
            raise fail(f"{len(bad)} of {len(ours)} rows outside tolerance", EXIT_FAILURE)

    guarded(body)


def bench_cmd(
    clip: Annotated[
        list[Path] | None, typer.Option(help="clip(s) to run (default: all ground-truth clips)")
    ] = None,
    formats: Annotated[
        str, typer.Option(help="model formats, comma-separated: pt,onnx,onnx-int8,ncnn,tflite")
    ] = "pt,onnx",
    sizes: Annotated[str, typer.Option(help="image sizes, comma-separated")] = "640,320",
    strides: Annotated[str, typer.Option(help="frame strides, comma-separated")] = "1",
    export_dir: Annotated[
        Path | None, typer.Option(help="where exports are written and reused (default ~/.cache/gatewatch/models)")
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(help="footage calibrating onnx-int8 (default: the shared footage no ground-truth row scores)"),
    ] = None,
    peer: Annotated[
        bool,
        typer.Option(help="gatewatch's default path against Ultralytics' ObjectCounter (yolov8n.pt, 640, "
                     "ByteTrack), alternating clip by clip in this one run: frames/s, ratio, memory, counts"),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Frames/s and ms per stage for each model format, image size and stride, with the counts."""
    _setup_logging(verbose)

    def body() -> None:
        if peer:
            from edge.devtools.bench import run_peer_bench

            run_peer_bench(clip, console)
            return
        from edge.devtools.bench import run_bench
        from edge.stages.export import default_export_dir

        run_bench(
            clip,
            [f.strip() for f in formats.split(",") if f.strip()],
            [int(s) for s in sizes.split(",")],
            [int(s) for s in strides.split(",")],
            export_dir or default_export_dir(),
            console,
            calibration,
        )

    guarded(body)


def validate_config_cmd(config: Annotated[Path, typer.Argument(help="unit config YAML")]) -> None:
    """Validate a unit config and report every error with its path."""

    def body() -> None:
        from edge.config import load_config

        cfg = load_config(config)
        console.print(
            f"config OK: gate {cfg.gate}, unit {cfg.unit}, {len(cfg.lanes)} lane(s), hash {cfg.config_hash()}"
        )

    guarded(body)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
    app.command("eval")(evaluate_cmd)
    app.command("bench")(bench_cmd)
    app.command("validate-config")(validate_config_cmd)
    register_runtime(app)
