"""Accuracy check against hand-counted ground truth (`footage/ground_truth.csv`, see `truth`).

Each clip is replayed once per distinct counting line, with a fresh tracker, and the counts by
direction and class are compared with the hand counts within each row's tolerance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from edge.config import CountingConfig, LaneConfig, LineConfig, ModelConfig, SourceConfig, UnitConfig
from edge.devtools.conditions import Condition
from edge.devtools.truth import (
    CLASS_SLACK,
    CLASSES,
    CSV_CLASS,
    EvalResult,
    GroundTruthError,
    TruthRow,
    read_ground_truth,
    score,
)
from edge.pipeline import Pipeline
from edge.stages.capture import FileSource
from edge.stages.detector import Tracker
from edge.stages.geometry import side_names


def eval_config(
    row: TruthRow, model: ModelConfig, counting: CountingConfig | None = None, band: float | None = None
) -> UnitConfig:
    a, b = row.line
    line = LineConfig(a=a, b=b) if band is None else LineConfig(a=a, b=b, band=band)
    return UnitConfig(
        gate="eval",
        unit="eval",
        source=SourceConfig(kind="file", path=row.video),
        lanes=[LaneConfig(id="line", line=line, directions=side_names(a, b))],
        model=model,
        counting=counting or CountingConfig(),
    )


def evaluate(
    footage: Path,
    model: ModelConfig,
    make_tracker: Callable[[ModelConfig], Tracker],
    rows: list[TruthRow] | None = None,
    on_frame: Callable[[], None] | None = None,
    counting: CountingConfig | None = None,
    band: float | None = None,
    condition: Condition | None = None,
) -> list[EvalResult]:
    """Replay each clip once per line (under `condition`, if given) and score every row for it."""
    rows = rows if rows is not None else read_ground_truth(footage / "ground_truth.csv")
    tracker = make_tracker(model)
    results: list[EvalResult] = []
    groups: dict[tuple[str, object], list[TruthRow]] = {}
    for row in rows:
        groups.setdefault((row.video, row.line), []).append(row)
    for (video, _), group in groups.items():
        cfg = eval_config(group[0], model, counting, band)
        tracker.reset()
        t0 = time.perf_counter()
        source = FileSource(
            footage / video, start=0.0, stride=model.vid_stride, rate=condition.fps if condition else None,
            transform=condition.transform if condition else None,
        )
        pipe = Pipeline(cfg, source, tracker, on_frame=(lambda *_: on_frame()) if on_frame else None)
        for _ in pipe.records():
            pass
        pipe.close()
        wall = time.perf_counter() - t0
        seconds = source.frame_count / source.fps if source.fps else 0.0
        for row in group:
            by_class = {c: pipe.totals.get(("line", c.value, row.direction), 0) for c in CLASSES}
            results.append(
                EvalResult(
                    row,
                    sum(by_class.values()),
                    by_class,
                    pipe.stats.frames,
                    seconds,
                    source.frame_count,
                    tuple(pipe.stats.total_s.items()),
                    wall,
                )
            )
    return results


def frames_to_process(footage: Path, rows: list[TruthRow], stride: int, conditions: list[Condition]) -> int:
    """Frames an evaluation will process, for its progress bar."""
    total = 0
    for video in {r.video for r in rows}:
        for cond in conditions:
            src = FileSource(footage / video, 0.0, stride=stride, rate=cond.fps)
            total += src.expected_frames * len({r.line for r in rows if r.video == video})
            src.close()
    return total


def run_eval(
    footage: Path | None,
    model: Path | None,
    imgsz: int | None,
    stride: int | None,
    conditions: list[Condition],
    peer: bool = False,
    clips: list[str] | None = None,
) -> dict[str, dict[str, list[EvalResult]]]:
    """The `gatewatch eval` body: default model, shared footage, every condition asked for, with the
    peer under the same conditions if asked; one progress bar over everything.

    Returns {"gatewatch" | "peer": {condition name: results}}."""
    from edge.paths import default_model, footage_dir
    from edge.pipeline import make_tracker

    folder = footage or footage_dir()
    rows = read_ground_truth(folder / "ground_truth.csv")
    if clips:
        unknown = sorted(set(clips) - {r.video for r in rows})
        if unknown:
            raise GroundTruthError(f"no ground-truth row for {', '.join(unknown)}")
        rows = [r for r in rows if r.video in clips]
    update: dict[str, object] = {"path": (model or default_model()).resolve()}
    if imgsz:
        update["imgsz"] = imgsz
    if stride:
        update["vid_stride"] = stride
    cfg = ModelConfig.model_validate(update)
    total = frames_to_process(folder, rows, cfg.vid_stride, conditions)
    if peer:
        total += frames_to_process(folder, rows, 1, conditions)
    out: dict[str, dict[str, list[EvalResult]]] = {"gatewatch": {}}
    with tqdm(total=total, unit="frame", desc="eval", disable=None) as bar:

        def tick() -> None:
            bar.update(1)

        for cond in conditions:
            bar.set_postfix_str(f"gatewatch {cond.name}")
            out["gatewatch"][cond.name] = evaluate(folder, cfg, make_tracker, rows, on_frame=tick,
                                                   condition=cond)
        if peer:
            from edge.devtools.peer import peer_evaluate

            out["peer"] = {}
            for cond in conditions:
                bar.set_postfix_str(f"peer {cond.name}")
                out["peer"][cond.name] = peer_evaluate(folder, default_model().resolve(), rows, cond, on_frame=tick)
    return out


def _hand(n: int | None) -> str:
    return "-" if n is None else str(n)


def print_results(results: list[EvalResult], console: Console, title: str = "counted vs hand-counted") -> None:
    if not console.is_terminal:
        console.width = 160  # logs want whole clip names, not an 80-column squeeze
    table = Table(title=title)
    for col in ("clip", "direction", "counted", "hand", "tol", "ok", "car", "truck", "bus", "motorbike"):
        table.add_column(col)
    for r in results:
        cells = [
            f"{r.by_class[c]}/{_hand(r.row.by_class[c])}" if r.class_ok(c)
            else f"[red]{r.by_class[c]}/{_hand(r.row.by_class[c])}[/]"
            for c in CLASSES
        ]
        table.add_row(
            r.row.video,
            r.row.direction,
            str(r.total),
            _hand(r.row.total),
            f"±{r.row.tolerance}",
            "[green]yes[/]" if r.ok else "[red]NO[/]",
            *cells,
        )
    console.print(table)
    console.print(f"class cells are counted/hand ('-': not counted by hand); red: off by more than the tolerance "
                  f"+ {CLASS_SLACK}")


def _short_class(r: EvalResult) -> str:
    """Classes where something was counted or expected, e.g. 'c26 t3'."""
    parts = []
    for c in CLASSES:
        n, h = r.by_class.get(c, 0), r.row.by_class.get(c)
        if n or h:
            text = f"{CSV_CLASS[c][0]}{n}"
            parts.append(text if r.class_ok(c) else f"[red]{text}[/]")
    return " ".join(parts)


def matrix_table(matrix: dict[str, list[EvalResult]], title: str) -> Table:
    """Rows: clip and direction; columns: conditions; cells: counted/hand and the classes counted."""
    table = Table(title=title)
    table.add_column("clip")
    table.add_column("dir")
    table.add_column("hand")
    for name in matrix:
        table.add_column(name)
    first = next(iter(matrix.values()), [])
    for i, r0 in enumerate(first):
        cells = []
        for results in matrix.values():
            r = results[i]
            mark = "" if r.ok else "[red]"
            end = "" if r.ok else "[/]"
            cells.append(f"{mark}{r.total}{end} {_short_class(r)}")
        table.add_row(r0.row.video, r0.row.direction,
                      f"{_hand(r0.row.total)}±{r0.row.tolerance}", *cells)
    fps_cells = []
    for results in matrix.values():
        runs = {(r.row.video, r.row.line): r for r in results}  # rows of one clip and line share a run
        frames = sum(r.frames for r in runs.values())
        wall = sum(r.wall_s for r in runs.values())
        fps_cells.append(f"{frames / wall:.1f} fps" if wall else "")
    table.add_row("processed frames/s", "", "", *fps_cells, style="dim")
    return table


def print_matrix(runs: dict[str, dict[str, list[EvalResult]]], console: Console) -> None:
    if not console.is_terminal:
        console.width = 220
    for who, matrix in runs.items():
        console.print(matrix_table(matrix, f"{who}: counted per condition (c car, t truck, b bus, m motorbike; "
                                           "red: out of tolerance)"))
        console.print(f"{who}: {score(matrix)}")
