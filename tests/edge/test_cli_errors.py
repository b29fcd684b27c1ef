"""Bad input at the command line: one clear error, a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import shared_data


def gatewatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gatewatch", *args], capture_output=True, text=True, timeout=timeout)


def unit_yaml(tmp_path: Path, **overrides: object) -> Path:
    cfg: dict[str, object] = {
        "gate": "huu-nghi",
        "unit": "cam1",
        "source": {"kind": "file", "path": "clip.mp4"},
        "lanes": [{"id": "in1", "line": {"a": [0, 0.5], "b": [1, 0.5]}}],
    }
    cfg |= overrides
    path = tmp_path / "unit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    last = proc.stderr.strip().splitlines()[-1] if "\n" not in proc.stderr.strip() else None
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, proc.stderr  # retry warnings may precede it; one error line
    assert last is None or last.startswith("error:")
    for n in needles:
        assert n in proc.stderr, proc.stderr


def test_bad_config_reports_every_error_with_its_path(tmp_path: Path) -> None:
    path = unit_yaml(
        tmp_path, lanes=[{"id": "In 1", "line": {"a": [0, 2], "b": [1, 0.5]}, "colour": "red"}], model={"imgsz": 650}
    )
    proc = gatewatch("validate-config", str(path))
    assert_clean_error(proc, "lanes.0.id", "lanes.0.line.a.1", "lanes.0.colour", "model.imgsz")


def test_valid_config_validates(tmp_path: Path) -> None:
    proc = gatewatch("validate-config", str(unit_yaml(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout


def test_missing_config_file(tmp_path: Path) -> None:
    assert_clean_error(gatewatch("validate-config", str(tmp_path / "nope.yaml")), "not found")


def test_missing_model(tmp_path: Path) -> None:
    clip = shared_data.footage("labelme_truck_5frames.mp4")
    proc = gatewatch("replay", str(clip), "--model", str(tmp_path / "missing.pt"))
    assert_clean_error(proc, "model not found")


def test_unreadable_video(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    proc = gatewatch("replay", str(bad), "--model", str(shared_data.model()))
    assert_clean_error(proc, "broken.mp4")
    assert_clean_error(
        gatewatch("replay", str(tmp_path / "absent.mp4"), "--model", str(shared_data.model())), "video not found"
    )


@pytest.mark.timeout(120)
def test_camera_that_never_opens(tmp_path: Path) -> None:
    path = unit_yaml(
        tmp_path,
        source={"kind": "rtsp", "path": "rtsp://127.0.0.1:9/none", "open_timeout_s": 2, "reconnect_initial_s": 0.2},
    )
    proc = gatewatch("replay", "rtsp://127.0.0.1:9/none", "--config", str(path), "--model", str(shared_data.model()))
    assert_clean_error(proc, "did not open")
