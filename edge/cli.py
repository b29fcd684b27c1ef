"""Edge commands: replay a clip, check accuracy against ground truth, benchmark, validate config.

Every command turns expected failures (bad config, missing model, unreadable video, camera
that never opens) into one clear line on stderr and a non-zero exit: operators read these
in journald, where a traceback buries the one line that matters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from edge import EdgeError
from edge.service.cli import register_runtime

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    # escaped: a path or URL in the message must not be read as rich markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def guarded(fn: Callable[[], T], expected: tuple[type[Exception], ...] = ()) -> T:
    """Run a command body, printing expected errors (EdgeError and `expected`) as one line
    instead of a traceback."""
    catch: tuple[type[Exception], ...] = (EdgeError, *expected)
    try:
        return fn()
    except catch as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


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
        run_replay(cfg, out=out, video_out=video_out, console=console)

    guarded(body)


def evaluate_cmd(
    footage: Annotated[Path | None, typer.Option(help="folder with ground_truth.csv and the clips")] = None,
    model: Annotated[Path | None, typer.Option(help="model path (default: shared yolov8n.pt)")] = None,
    imgsz: Annotated[int | None, typer.Option(help="inference image size")] = None,
    stride: Annotated[int | None, typer.Option(help="process every n-th frame")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Count every clip in ground_truth.csv and compare with the hand counts."""
    _setup_logging(verbose)

    def body() -> None:
        from edge.devtools.evaluation import print_results, run_eval

        results = run_eval(footage, model, imgsz, stride, console)
        print_results(results, console)
        bad = [r for r in results if not r.ok]
        if bad:
            raise fail(f"{len(bad)} of {len(results)} rows outside tolerance", 1)

    guarded(body)


def bench_cmd(
    clip: Annotated[
        list[Path] | None, typer.Option(help="clip(s) to run (default: all ground-truth clips)")
    ] = None,
    formats: Annotated[
        str, typer.Option(help="model formats, comma-separated: pt,onnx,ncnn,tflite")
    ] = "pt,onnx",
    sizes: Annotated[str, typer.Option(help="image sizes, comma-separated")] = "640,320",
    strides: Annotated[str, typer.Option(help="frame strides, comma-separated")] = "1",
    export_dir: Annotated[
        Path | None, typer.Option(help="where exports are written and reused (default ~/.cache/gatewatch/models)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Frames/s and ms per stage for each model format, image size and stride, with the counts."""
    _setup_logging(verbose)

    def body() -> None:
        from edge.devtools.bench import run_bench
        from edge.devtools.export import default_export_dir

        run_bench(
            clip,
            [f.strip() for f in formats.split(",") if f.strip()],
            [int(s) for s in sizes.split(",")],
            [int(s) for s in strides.split(",")],
            export_dir or default_export_dir(),
            console,
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
