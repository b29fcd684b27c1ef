"""Hand-counted ground truth (`footage/ground_truth.csv`) and how a count is scored against it.

Shared by gatewatch's own evaluation and the peer's, so both are judged by exactly the same rules.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import EdgeError
from wire.payloads import VehicleClass

CLASSES = (VehicleClass.CAR, VehicleClass.TRUCK, VehicleClass.BUS, VehicleClass.MOTORBIKE)
CSV_CLASS = {
    VehicleClass.CAR: "car",
    VehicleClass.TRUCK: "truck",
    VehicleClass.BUS: "bus",
    VehicleClass.MOTORBIKE: "motorcycle",
}


DIRECTIONS = ("down", "up", "right", "left")
#: a class cell may be off by the row's tolerance plus this many vehicles: one fair car/truck call (a
#: pickup, a large van) must not fail a row whose total is exact
CLASS_SLACK = 1


@dataclass(frozen=True)
class TruthRow:
    """One hand-counted row. A blank cell (None) means "not counted by hand": it is not compared."""

    video: str
    line: tuple[tuple[float, float], tuple[float, float]]
    direction: str
    total: int | None
    by_class: dict[VehicleClass, int | None]
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
    wall_s: float = 0.0

    @property
    def total_ok(self) -> bool:
        return self.row.total is None or abs(self.total - self.row.total) <= self.row.tolerance

    def class_ok(self, cls: VehicleClass) -> bool:
        hand = self.row.by_class.get(cls)
        return hand is None or abs(self.by_class.get(cls, 0) - hand) <= self.row.tolerance + CLASS_SLACK

    @property
    def classes_ok(self) -> bool:
        return all(self.class_ok(c) for c in CLASSES)

    @property
    def ok(self) -> bool:
        """Within tolerance on everything the hand count gives: the total (if given) and every class
        given when no total is (a "trucks only" row compares trucks)."""
        if self.row.total is not None:
            return self.total_ok
        return all(
            abs(self.by_class.get(c, 0) - h) <= self.row.tolerance
            for c, h in self.row.by_class.items() if h is not None
        )

    @property
    def error(self) -> int:
        """Vehicles off on the compared figure (the total, else the given classes)."""
        if self.row.total is not None:
            return abs(self.total - self.row.total)
        return sum(abs(self.by_class.get(c, 0) - h) for c, h in self.row.by_class.items() if h is not None)


class GroundTruthError(EdgeError):
    """ground_truth.csv is missing or malformed."""


def _cell(r: dict[str, str | None], col: str, where: str, kind: type[int] | type[float], blank_ok: bool) -> Any:
    raw = r.get(col)
    text = (raw or "").strip()
    if not text:
        if blank_ok:
            return None
        raise GroundTruthError(f"{where}: column '{col}' is empty")
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise GroundTruthError(f"{where}: column '{col}' must be {what}, got {text!r}") from None
    if value < 0:
        raise GroundTruthError(f"{where}: column '{col}' must not be negative, got {text!r}")
    return value


def read_ground_truth(path: Path) -> list[TruthRow]:
    """Hand counts as people write them: blank cells are "not counted", anything malformed is one
    clear error naming the line and column (never a traceback)."""
    if not path.is_file():
        raise GroundTruthError(f"ground truth not found: {path}")
    required = ["video", "line_x1", "line_y1", "line_x2", "line_y2", "direction", "tolerance"]
    rows = []
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise GroundTruthError(f"{path}: missing column(s) {', '.join(missing)}")
            for n, r in enumerate(reader, start=2):
                where = f"{path.name} line {n}"
                video = (r.get("video") or "").strip()
                if not video:
                    raise GroundTruthError(f"{where}: column 'video' is empty")
                coords = [_cell(r, c, where, float, False) for c in required[1:5]]
                if any(v > 1 for v in coords):
                    raise GroundTruthError(f"{where}: line coordinates are normalised, 0..1")
                direction = (r.get("direction") or "").strip()
                if direction not in DIRECTIONS:
                    raise GroundTruthError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}, "
                                           f"got {direction!r}")
                by_class = {c: _cell(r, CSV_CLASS[c], where, int, True) for c in CLASSES}
                total = _cell(r, "total", where, int, True)
                if total is None and all(v is None for v in by_class.values()):
                    raise GroundTruthError(f"{where}: no count given (fill 'total' or a class column)")
                rows.append(
                    TruthRow(
                        video=video,
                        line=((coords[0], coords[1]), (coords[2], coords[3])),
                        direction=direction,
                        total=total,
                        by_class=by_class,
                        tolerance=_cell(r, "tolerance", where, int, True) or 0,
                        notes=r.get("notes") or "",
                    )
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GroundTruthError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise GroundTruthError(f"{path}: no rows")
    return rows


@dataclass(frozen=True)
class Score:
    cells: int
    in_tolerance: int
    classes_sane: int
    abs_error: int

    def __str__(self) -> str:
        return (f"{self.in_tolerance}/{self.cells} cells within tolerance, {self.classes_sane}/{self.cells} with "
                f"sane classes, {self.abs_error} vehicles off in all")


def score(matrix: dict[str, list[EvalResult]]) -> Score:
    results = [r for rs in matrix.values() for r in rs]
    return Score(len(results), sum(r.ok for r in results), sum(r.classes_ok for r in results),
                 sum(r.error for r in results))
