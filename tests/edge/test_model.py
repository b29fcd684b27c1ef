"""The real YOLO model on the real recorded clips: accuracy, replay end to end, exports.

These are the slow tests (a few minutes on 2 cores). Missing footage or model fails under
CI=true (see tests/shared_data.py) rather than passing silently.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import cv2
import pytest

from edge.config import ModelConfig
from edge.devtools.evaluation import evaluate
from edge.devtools.truth import EvalResult, TruthRow, read_ground_truth
from edge.pipeline import make_tracker
from tests import shared_data
from wire.payloads import VehicleClass

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def results() -> list[EvalResult]:
    folder = shared_data.footage()
    return evaluate(folder, ModelConfig(path=shared_data.model()), make_tracker)


def test_every_ground_truth_row_within_tolerance(results: list[EvalResult]) -> None:
    rows = read_ground_truth(shared_data.footage() / "ground_truth.csv")
    assert len(results) == len(rows) >= 5
    report = "\n".join(
        f"{r.row.video} {r.row.direction}: {r.total} vs {r.row.total}±{r.row.tolerance} "
        f"{ {c.value: n for c, n in r.by_class.items() if n} }"
        for r in results
    )
    print(report)
    assert all(r.ok for r in results), report


def by_video(results: list[EvalResult], name: str) -> EvalResult:
    return next(r for r in results if r.row.video == name)


def test_classes_are_sane(results: list[EvalResult]) -> None:
    assert by_video(results, "degirum_Traffic.mp4").by_class[VehicleClass.TRUCK] == 0
    # 1 box truck and 2 large vans that may fairly be called trucks
    assert by_video(results, "bgslibrary_dataset_video03.avi").by_class[VehicleClass.TRUCK] <= 3
    assert by_video(results, "bgslibrary_dataset_video03.avi").by_class[VehicleClass.TRUCK] >= 1
    for r in results:
        assert r.by_class[VehicleClass.BUS] == 0 and r.by_class[VehicleClass.MOTORBIKE] == 0, r.row.video


@pytest.fixture(scope="module")
def top_down() -> EvalResult:
    """intel_car-detection: a parking lot seen from straight above, with frame jitter.

    Stock COCO models see no vehicles from above; with the vehicle-only head the parked cars are
    detected, so this is where jitter could fake crossings. Checked by eye on the frames: two cars
    drive down the lot across the middle line, a grey one at about 15.5-16 s and a white one at
    about 26.2 s (it comes in at the top edge at 25.6 s and is gone at the bottom by 28 s); every
    other car is parked. (Until 2026-12-01 this said one car: the white one was missed by eye too.)
    """
    clip = shared_data.footage("intel_car-detection.mp4")
    row = TruthRow(clip.name, ((0.0, 0.5), (1.0, 0.5)), "down", 2, {}, 0, "")
    (result,) = evaluate(clip.parent, ModelConfig(path=shared_data.model()), make_tracker, [row])
    assert result.frames == 377
    return result


def test_jittery_top_down_camera_fakes_no_crossing(top_down: EvalResult) -> None:
    """Parked cars jitter but never cross: at most the two cars that drive across count, all as cars."""
    assert 1 <= top_down.total <= 2
    assert top_down.by_class[VehicleClass.CAR] == top_down.total


@pytest.mark.xfail(strict=True, reason="counts 1 of 2: the white car is in view for only ~0.7 s before it crosses, "
                   "at the top edge, and its track does not reach the line (heavy JPEG happens to catch it)")
def test_jittery_top_down_camera_counts_both_cars_that_drive_across(top_down: EvalResult) -> None:
    assert top_down.total == 2


def test_replay_end_to_end(tmp_path: Path) -> None:
    clip = shared_data.footage("degirum_Traffic.mp4")
    out, video = tmp_path / "records.jsonl", tmp_path / "annotated.mp4"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatewatch",
            "replay",
            str(clip),
            "--model",
            str(shared_data.model()),
            "--out",
            str(out),
            "--video-out",
            str(video),
            "--start",
            "2026-11-24T08:00:00Z",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    starts = [datetime.fromisoformat(r["window_start"]) for r in records]
    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert [(s - t0).total_seconds() for s in starts] == [0.0, 10.0]  # 335 frames at 29.97 fps = 11.2 s
    assert sum(n for r in records for d in r["counts"].values() for n in d.values()) == 11
    assert all(set(r["counts"]) <= {"car"} for r in records)
    assert sum(r["frames"] for r in records) == 335
    assert "all" in proc.stdout and "11" in proc.stdout
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 335
    cap.release()


@pytest.mark.parametrize("fmt", ["onnx", "ncnn"])
def test_exports_count_the_same(fmt: str, tmp_path: Path) -> None:
    """The vehicle-only model exported to ONNX and NCNN (what a Pi runs) loads from a real path
    and counts the clip like the .pt model."""
    from edge.stages.export import export_model

    exported = export_model(shared_data.model(), fmt, 480, tmp_path)
    assert exported.exists() and exported.name.startswith("yolov8n-")
    folder = shared_data.footage()
    rows = [r for r in read_ground_truth(folder / "ground_truth.csv") if r.video == "degirum_Traffic.mp4"]
    (result,) = evaluate(folder, ModelConfig(path=exported, imgsz=480), make_tracker, rows)
    assert result.total == 11 and result.by_class[VehicleClass.CAR] == 11


def test_shared_int8_tflite_counts_the_clip() -> None:
    """The shared int8 TFLite model (fixed 640 input, full 80-class head: the vehicle head can
    only be cut from a .pt) through LiteRT."""
    tflite = shared_data.model("yolov8n_int8.tflite")
    folder = shared_data.footage()
    rows = [r for r in read_ground_truth(folder / "ground_truth.csv") if r.video == "degirum_Traffic.mp4"]
    (result,) = evaluate(folder, ModelConfig(path=tflite, imgsz=640), make_tracker, rows)
    assert result.total == 11 and result.by_class[VehicleClass.CAR] == 11
