"""Accuracy check against hand-counted ground truth (`footage/ground_truth.csv`).

Each clip is replayed once per distinct counting line, with a fresh tracker, and the counts by
direction and class are compared with the hand counts within each row's tolerance.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from edge import EdgeError
from edge.config import CountingConfig, LaneConfig, LineConfig, ModelConfig, SourceConfig, UnitConfig
from edge.pipeline import Pipeline
from edge.stages.capture import FileSource
from edge.stages.detector import Tracker
from edge.stages.geometry import side_names
from wire.payloads import VehicleClass

CLASSES = (VehicleClass.CAR, VehicleClass.TRUCK, VehicleClass.BUS, VehicleClass.MOTORBIKE)
CSV_CLASS = {
    VehicleClass.CAR: "car",
    VehicleClass.TRUCK: "truck",
    VehicleClass.BUS: "bus",
    VehicleClass.MOTORBIKE: "motorcycle",
}


@dataclass(frozen=True)
class TruthRow:
    video: str
    line: tuple[tuple[float, float], tuple[float, float]]
    direction: str
    total: int
    by_class: dict[VehicleClass, int]
    tolerance: int
    notes: str


@dataclass(frozen=True)
class EvalResult:
    row: TruthRow
    total: int
    by_class: dict[VehicleClass, int]
    frames: int
    seconds: float
    source_frames: int = 0
    stage_s: tuple[tuple[str, float], ...] = ()

    @property
    def ok(self) -> bool:
        return abs(self.total - self.row.total) <= self.row.tolerance


def read_ground_truth(path: Path) -> list[TruthRow]:
    if not path.is_file():
        raise EdgeError(f"ground truth not found: {path}")
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            rows.append(
                TruthRow(
                    video=r["video"],
                    line=(
                        (float(r["line_x1"]), float(r["line_y1"])),
                        (float(r["line_x2"]), float(r["line_y2"])),
                    ),
                    direction=r["direction"],
                    total=int(r["total"]),
                    by_class={c: int(r[CSV_CLASS[c]]) for c in CLASSES},
                    tolerance=int(r["tolerance"]),
                    notes=r.get("notes", ""),
                )
            )
    return rows


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
) -> list[EvalResult]:
    """Replay each clip once per line and score every ground-truth row for it."""
    rows = rows if rows is not None else read_ground_truth(footage / "ground_truth.csv")
    tracker = make_tracker(model)
    results: list[EvalResult] = []
    groups: dict[tuple[str, object], list[TruthRow]] = {}
    for row in rows:
        groups.setdefault((row.video, row.line), []).append(row)
    for (video, _), group in groups.items():
        cfg = eval_config(group[0], model, counting, band)
        tracker.reset()
        source = FileSource(footage / video, start=0.0, stride=model.vid_stride)
        pipe = Pipeline(cfg, source, tracker, on_frame=(lambda *_: on_frame()) if on_frame else None)
        for _ in pipe.records():
            pass
        pipe.close()
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
                )
            )
    return results


def run_eval(
    footage: Path | None, model: Path | None, imgsz: int | None, stride: int | None, console: Console
) -> list[EvalResult]:
    """The `gatewatch eval` body: default model, shared footage, a progress bar over all clips."""
    from edge.paths import default_model, footage_dir
    from edge.stages.detector import build_tracker

    folder = footage or footage_dir()
    rows = read_ground_truth(folder / "ground_truth.csv")
    update: dict[str, object] = {"path": (model or default_model()).resolve()}
    if imgsz:
        update["imgsz"] = imgsz
    if stride:
        update["vid_stride"] = stride
    cfg = ModelConfig.model_validate(update)
    total = 0
    for video in {r.video for r in rows}:
        src = FileSource(folder / video, 0.0)
        total += src.frame_count // cfg.vid_stride
        src.close()
    with tqdm(total=total, unit="frame", desc="eval", disable=None) as bar:

        def tick() -> None:
            bar.update(1)

        return evaluate(folder, cfg, build_tracker, rows, on_frame=tick)


def print_results(results: list[EvalResult], console: Console) -> None:
    if not console.is_terminal:
        console.width = 160  # logs want whole clip names, not an 80-column squeeze
    table = Table(title="counted vs hand-counted")
    for col in ("clip", "direction", "counted", "hand", "tol", "ok", "car", "truck", "bus", "motorbike"):
        table.add_column(col)
    for r in results:
        cells = [f"{r.by_class[c]}/{r.row.by_class[c]}" for c in CLASSES]
        table.add_row(
            r.row.video,
            r.row.direction,
            str(r.total),
            str(r.row.total),
            f"±{r.row.tolerance}",
            "[green]yes[/]" if r.ok else "[red]NO[/]",
            *cells,
        )
    console.print(table)
    console.print("class cells are counted/hand")
