"""Torch-free runtimes behind the `Detector` seam (ONNX Runtime, NCNN): their pre/post-processing,
the export cache, counts equal to the ultralytics path on real clips, and a unit on that path that
never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge.config import ModelConfig
from edge.devtools.evaluation import evaluate
from edge.devtools.truth import EvalResult, read_ground_truth
from edge.pipeline import make_tracker
from edge.stages.export import ExportError, cache_entry, cached_export, entry_is_complete
from edge.stages.yolo import Letterbox, decode, input_shape, letterbox
from tests import shared_data
from wire.payloads import VehicleClass

CLIPS = ("degirum_Traffic.mp4", "opencv4nodejs_traffic.mp4")
CLASS_OF = {0: VehicleClass.CAR, 3: VehicleClass.TRUCK}


@pytest.mark.parametrize("hw", [(720, 1280), (480, 640), (1080, 1920), (640, 360), (333, 517)])
def test_letterbox_gives_the_input_ultralytics_gives_a_pt(hw: tuple[int, int]) -> None:
    from ultralytics.data.augment import LetterBox

    frame = np.random.default_rng(1).integers(0, 255, (*hw, 3), dtype=np.uint8)
    theirs = np.asarray(LetterBox(480, auto=True, stride=32)(image=frame))
    shape = input_shape(hw, 480)
    blob, lb = letterbox(frame, shape)
    assert shape == theirs.shape[:2]
    expected = theirs[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255
    assert np.abs(blob[0] - expected).max() < 1e-6
    assert lb.frame_size == (hw[1], hw[0])


def test_decode_keeps_the_best_vehicle_box_and_maps_it_back_to_the_frame() -> None:
    lb = Letterbox(gain_x=0.5, gain_y=0.5, pad_x=0, pad_y=16, frame_size=(960, 540))
    # columns: a car, the same car scored a bit lower (suppressed), a truck elsewhere, an unmapped class,
    # and a box under the confidence threshold
    pred = np.zeros((4 + 4, 5), np.float32)
    pred[:4] = np.array([[100, 100, 40, 20], [101, 100, 40, 20], [300, 200, 80, 40], [50, 50, 10, 10], [9, 9, 4, 4]]).T
    pred[4 + 0, 0], pred[4 + 0, 1] = 0.9, 0.8
    pred[4 + 3, 2] = 0.6
    pred[4 + 1, 3] = 0.95  # class 1 is not in the class map: dropped, however confident
    pred[4 + 0, 4] = 0.04
    boxes = decode(pred, lb, CLASS_OF, conf=0.05, iou=0.7)
    assert boxes.vehicle_class == (VehicleClass.CAR, VehicleClass.TRUCK)
    assert boxes.confidence.tolist() == pytest.approx([0.9, 0.6])
    assert boxes.xyxy[0].tolist() == pytest.approx([160, 148, 240, 188])  # (80..120, 90..110) - pad, / 0.5
    assert len(decode(pred, lb, CLASS_OF, conf=0.97, iou=0.7)) == 0


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


def test_export_cache_exports_once_rebuilds_damage_and_refuses_a_read_only_dir(
    export_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    weights = shared_data.model()
    first = cached_export(weights, "onnx", 480, export_dir)
    assert "exporting yolov8n.pt to onnx at 480" in capfd.readouterr().err
    assert entry_is_complete(first)
    assert cached_export(weights, "onnx", 480, export_dir) == first
    assert capfd.readouterr().err == ""  # a hit exports nothing and says nothing
    with first.open("r+b") as f:  # a damaged entry (a disk error, an export killed half-way)
        f.truncate(1000)
    assert not entry_is_complete(first)
    assert cached_export(weights, "onnx", 480, export_dir) == first
    assert "damaged, re-exporting" in capfd.readouterr().err and entry_is_complete(first)

    readonly = tmp_path / "ro"
    readonly.mkdir()
    if os.geteuid() == 0:  # root writes through mode bits: make the folder immutable instead
        subprocess.run(["chattr", "+i", str(readonly)], check=True)
    else:
        readonly.chmod(0o555)
    try:
        with pytest.raises(ExportError, match="not writable"):
            cached_export(weights, "onnx", 320, readonly)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(readonly)], check=True)
        readonly.chmod(0o755)


def _counts(results: list[EvalResult]) -> list[tuple[str, str, int, dict[VehicleClass, int]]]:
    return [(r.row.video, r.row.direction, r.total, r.by_class) for r in results]


@pytest.fixture(scope="module")
def rows() -> list:  # type: ignore[type-arg]
    folder = shared_data.footage()
    return [r for r in read_ground_truth(folder / "ground_truth.csv") if r.video in CLIPS]


@pytest.fixture(scope="module")
def ultralytics_counts(rows: list) -> list:  # type: ignore[type-arg]
    cfg = ModelConfig(path=shared_data.model(), format="pt")
    return _counts(evaluate(shared_data.footage(), cfg, make_tracker, rows))


@pytest.mark.model
@pytest.mark.parametrize("fmt", ["onnx", "ncnn"])
def test_torch_free_runtime_counts_like_the_ultralytics_path(
    fmt: str, export_dir: Path, rows: list, ultralytics_counts: list  # type: ignore[type-arg]
) -> None:
    """ONNX Runtime runs the same fp32 graph as torch: its counts are the .pt path's, exactly. NCNN's
    kernels round differently (fused convolutions, its own sigmoid), so a box near the threshold can
    come and go in a frame: its counts may differ from the .pt path's by one per row, and never leave
    the hand count's tolerance (CI once saw opencv4nodejs right at 18 against the .pt path's 17)."""
    exported = cached_export(shared_data.model(), fmt, 480, export_dir)
    mine = evaluate(shared_data.footage(), ModelConfig(path=exported), make_tracker, rows)
    if fmt == "onnx":
        assert _counts(mine) == ultralytics_counts
        return
    for result, (video, direction, total, _) in zip(mine, ultralytics_counts, strict=True):
        assert (result.row.video, result.row.direction) == (video, direction)
        assert abs(result.total - total) <= 1, (video, direction, result.total, total)
        assert result.total_ok, (video, direction, result.total, result.row.total)


LIVE_UNIT = textwrap.dedent(
    """
    import json, sys
    from edge.config import LaneConfig, LineConfig, ModelConfig, SourceConfig, UnitConfig
    from edge.pipeline import build_pipeline
    import edge.service.runtime  # what `gatewatch edge` runs

    model, clip, fmt = sys.argv[1:4]
    cfg = UnitConfig(
        gate="g1", unit="u1", source=SourceConfig(kind="file", path=clip, start_time="2026-11-24T08:00:00Z"),
        lanes=[LaneConfig(id="l1", line=LineConfig(a=(0, 0.5), b=(1, 0.5)), directions=("down", "up"))],
        model=ModelConfig(path=model, format=fmt, tracker="gate_rf_bytetrack.yaml"),
    )
    pipe = build_pipeline(cfg)
    for _ in pipe.records():
        pass
    heavy = sorted(m for m in ("torch", "torchvision", "ultralytics") if m in sys.modules)
    print(json.dumps({"totals": {"/".join(k): n for k, n in pipe.totals.items()}, "heavy": heavy}))
    """
)


@pytest.mark.model
@pytest.mark.parametrize("fmt", ["onnx", "ncnn"])
def test_a_unit_on_the_torch_free_path_never_imports_torch(fmt: str, export_dir: Path) -> None:
    """A .pt with the torch-free tracker: exported once in a process of its own, then counted without torch."""
    clip = shared_data.footage("degirum_Traffic.mp4")
    env = {**os.environ, "GATEWATCH_EXPORT_DIR": str(export_dir)}
    proc = subprocess.run(
        [sys.executable, "-c", LIVE_UNIT, str(shared_data.model()), str(clip), fmt],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []
    assert out["totals"] == {"l1/car/down": 11}


def test_each_model_runs_in_the_runtime_its_format_asks_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.stages import runtimes

    pt, onnx, tflite, ncnn = tmp_path / "m.pt", tmp_path / "m.onnx", tmp_path / "m.tflite", tmp_path / "m_ncnn_model"
    ncnn.mkdir()
    (ncnn / "model.ncnn.param").write_text("")
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert runtimes.runtime_for(ModelConfig(path=pt)) == "onnx"  # auto on x86
    assert runtimes.runtime_for(ModelConfig(path=pt, format="pt")) == "ultralytics"
    assert runtimes.runtime_for(ModelConfig(path=pt, format="ncnn")) == "ncnn"
    assert runtimes.runtime_for(ModelConfig(path=onnx, format="ncnn")) == "onnx"  # an export runs as what it is
    assert runtimes.runtime_for(ModelConfig(path=ncnn)) == "ncnn"
    assert runtimes.runtime_for(ModelConfig(path=tflite)) == "ultralytics"
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert runtimes.runtime_for(ModelConfig(path=pt)) == "ncnn"  # auto on a Pi


def test_int8_needs_calibration_footage_and_says_so_in_one_line(tmp_path: Path) -> None:
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"weights")
    with pytest.raises(ExportError, match=r"needs model\.calibration"):
        cache_entry(weights, "onnx-int8", 480, tmp_path)
    with pytest.raises(ExportError, match="does not exist"):
        cache_entry(weights, "onnx-int8", 480, tmp_path, calibration=tmp_path / "nowhere.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no footage here")
    with pytest.raises(ExportError, match="holds no image or video"):
        cache_entry(weights, "onnx-int8", 480, tmp_path, calibration=empty)


def test_int8_cache_key_follows_the_calibration_footage(tmp_path: Path) -> None:
    """Other calibration frames give other activation ranges: never the same cache entry."""
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"weights")
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"frame a")
    b.write_bytes(b"frame b")
    entries = {cache_entry(weights, "onnx-int8", 480, tmp_path, calibration=p) for p in (a, b, a)}
    assert len(entries) == 2
    assert all(e.name.endswith(".int8.onnx") for e in entries)
    assert cache_entry(weights, "onnx", 480, tmp_path) not in entries


@pytest.mark.model
@pytest.mark.slow
def test_int8_calibrated_on_other_footage_runs_torch_free_at_its_measured_cost(
    export_dir: Path, rows: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[type-arg]
) -> None:
    """The int8 model, calibrated on shared footage no ground-truth row scores (as bench does), is
    really quantised and counts on the torch-free ONNX Runtime path. Its measured cost
    (docs/edge-pipeline.md, int8): up to 3 vehicles off the hand count on a row, which is why it is an
    option and not the default; a broken quantisation (ranges off by orders) counts nothing or noise."""
    from edge.devtools.bench import unscored_footage

    calibration = unscored_footage(shared_data.footage(), tmp_path / "calibration")
    assert not {p.name for p in calibration.iterdir()} & {r.video for r in rows}
    weights = shared_data.model()
    exported = cached_export(weights, "onnx-int8", 480, export_dir, calibration=calibration)
    assert exported.name.endswith(".int8.onnx") and entry_is_complete(exported)
    import onnx

    graph = onnx.load(str(exported)).graph
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 50  # really quantised, not a copy
    monkeypatch.setenv("GATEWATCH_EXPORT_DIR", str(export_dir))  # the unit finds the export made above
    cfg = ModelConfig(path=weights, format="onnx-int8", calibration=calibration)
    for r in evaluate(shared_data.footage(), cfg, make_tracker, rows):
        assert r.error <= 3 and r.classes_ok, (r.row.video, r.row.direction, r.total, r.by_class)
