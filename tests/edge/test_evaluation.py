"""Ground truth as people write it, and the conditions a gate unit sees (pure logic, no model)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edge import EdgeError
from edge.devtools.conditions import CONDITIONS, at_rate, parse_conditions
from edge.devtools.truth import EvalResult, GroundTruthError, TruthRow, read_ground_truth, score
from tests.edge.test_cli_errors import assert_clean_error, gatewatch
from wire.payloads import VehicleClass as V

HEADER = ["video", "line_x1", "line_y1", "line_x2", "line_y2", "direction", "total", "car", "truck", "bus",
          "motorcycle", "tolerance", "confidence", "notes"]


def write_truth(tmp_path: Path, *rows: list[str], header: list[str] = HEADER) -> Path:
    path = tmp_path / "ground_truth.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_blank_cells_are_not_counted_by_hand(tmp_path: Path) -> None:
    path = write_truth(
        tmp_path,
        ["a.mp4", "0", "0.5", "1", "0.5", "down", "", "", "12", "", "", "1", "high", "trucks only"],
        ["b.mp4", "0", "0.5", "1", "0.5", "up", "7", "", "", "", "", "", "", ""],
    )
    trucks_only, total_only = read_ground_truth(path)
    assert trucks_only.total is None and trucks_only.by_class == {V.CAR: None, V.TRUCK: 12, V.BUS: None,
                                                                 V.MOTORBIKE: None}
    assert total_only.total == 7 and total_only.tolerance == 0 and all(v is None for v in total_only.by_class.values())


def result(row: TruthRow, **counts: int) -> EvalResult:
    by_class = {c: counts.get(c.value, 0) for c in V}
    return EvalResult(row, sum(by_class.values()), by_class, frames=10, seconds=1.0)


def test_a_trucks_only_row_compares_only_trucks() -> None:
    row = TruthRow("a.mp4", ((0, 0.5), (1, 0.5)), "down", None, {V.CAR: None, V.TRUCK: 12, V.BUS: None,
                                                                  V.MOTORBIKE: None}, 1, "")
    assert result(row, truck=11, car=40).ok  # cars were not counted by hand: 40 of them prove nothing
    assert not result(row, truck=10, car=2).ok
    assert result(row, truck=10).error == 2


def test_total_rows_and_class_sanity() -> None:
    row = TruthRow("b.mp4", ((0, 0.5), (1, 0.5)), "down", 28, {V.CAR: 27, V.TRUCK: 1, V.BUS: 0, V.MOTORBIKE: 0},
                   1, "")
    fair = result(row, car=26, truck=3)  # two large vans called trucks: within tolerance + 1 per class
    assert fair.ok and fair.classes_ok
    wild = result(row, car=23, truck=6)
    assert wild.ok and not wild.classes_ok and not wild.class_ok(V.TRUCK)
    assert not result(row, car=25).ok
    s = score({"clean": [fair], "jpeg": [wild]})
    assert (s.cells, s.in_tolerance, s.classes_sane, s.abs_error) == (2, 2, 1, 2)


@pytest.mark.parametrize(
    ("cells", "needle"),
    [
        (["a.mp4", "0", "0.5", "1", "0.5", "down", "x", "", "", "", "", "1", "", ""], "column 'total' must be a whole"),
        (["a.mp4", "0", "", "1", "0.5", "down", "3", "", "", "", "", "1", "", ""], "column 'line_y1' is empty"),
        (["a.mp4", "0", "0.5", "1", "0.5", "sideways", "3", "", "", "", "", "1", "", ""], "direction must be"),
        (["a.mp4", "0", "0.5", "1", "0.5", "down", "", "", "", "", "", "1", "", ""], "no count given"),
        (["a.mp4", "0", "0.5", "1", "0.5", "down", "-2", "", "", "", "", "1", "", ""], "must not be negative"),
        (["a.mp4", "0", "0.5", "1.5", "0.5", "down", "2", "", "", "", "", "1", "", ""], "normalised"),
    ],
)
def test_malformed_ground_truth_is_one_clear_error_naming_the_line(tmp_path: Path, cells: list[str],
                                                                   needle: str) -> None:
    path = write_truth(tmp_path, cells)
    with pytest.raises(GroundTruthError, match="line 2") as err:
        read_ground_truth(path)
    assert needle in str(err.value)


def test_malformed_ground_truth_at_the_command_line(tmp_path: Path) -> None:
    write_truth(tmp_path, ["a.mp4", "0", "0.5", "1", "0.5", "down", "", "", "", "", "", "1", "", ""])
    assert_clean_error(gatewatch("eval", "--footage", str(tmp_path)), "ground_truth.csv line 2", "no count given")
    write_truth(tmp_path, ["a.mp4"], header=["video"])
    assert_clean_error(gatewatch("eval", "--footage", str(tmp_path)), "missing column(s) line_x1")


def test_conditions_by_name() -> None:
    assert [c.name for c in parse_conditions("all")] == list(CONDITIONS)
    assert [c.name for c in parse_conditions("fps5, dark")] == ["fps5", "dark"]
    with pytest.raises(EdgeError, match="unknown condition"):
        parse_conditions("fps5,fog")
    assert at_rate(8).fps == 8.0
    with pytest.raises(EdgeError):
        at_rate(0)


def test_transforms_are_deterministic_and_do_what_they_say() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(60, 200, (240, 320, 3), dtype=np.uint8)
    for name in ("dark", "gray", "jpeg", "half"):
        t = CONDITIONS[name].transform
        assert t is not None
        a, b = t(frame.copy(), 7), t(frame.copy(), 7)
        assert np.array_equal(a, b), name  # the same frame always looks the same: counts are reproducible
        assert a.dtype == np.uint8 and a.ndim == 3
    dark = CONDITIONS["dark"].transform(frame, 0)  # type: ignore[misc]
    assert abs(dark.mean() - 0.35 * frame.mean()) < 2 and dark.std() > 0
    gray = CONDITIONS["gray"].transform(frame, 0)  # type: ignore[misc]
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert CONDITIONS["half"].transform(frame, 0).shape == (120, 160, 3)  # type: ignore[misc]
    jpeg = CONDITIONS["jpeg"].transform(frame, 0)  # type: ignore[misc]
    assert jpeg.shape == frame.shape and not np.array_equal(jpeg, frame)
