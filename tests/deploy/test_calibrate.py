"""`gatewatch calibrate` on a real shared clip: the PNG shows the right frame and the lines exactly
where the config puts them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gatewatch.cli import app
from tests.shared_data import footage

RED = [0, 0, 255]
runner = CliRunner()


@pytest.fixture
def clip() -> Path:
    """The shared clip: missing fails under CI, skips locally (tests.shared_data)."""
    return footage("degirum_Traffic.mp4")


def write_config(tmp: Path, clip: Path) -> Path:
    cfg = {
        "gate": "demo", "unit": "cal",
        "source": {"kind": "file", "path": str(clip)},
        "lanes": [
            {"id": "north", "line": {"a": [0.1, 0.5], "b": [0.9, 0.5], "band": 0.02},
             "queue_zone": [[0.1, 0.2], [0.9, 0.2], [0.9, 0.5], [0.1, 0.5]]},
            {"id": "south", "line": {"a": [0.3, 0.8], "b": [0.3, 0.95]}},
        ],
    }
    path = tmp / "unit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def frame_at(clip: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(clip))
    try:
        for _ in range(index + 1):
            ok, image = cap.read()
            assert ok
        return image
    finally:
        cap.release()


def test_lines_drawn_red_where_configured_on_the_requested_frame(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "frame.png"
    result = runner.invoke(app, ["calibrate", "--config", str(write_config(tmp_path, clip)), "--out", str(out),
                                 "--at", "2"])
    assert result.exit_code == 0, result.output
    png = cv2.imread(str(out))
    assert png is not None
    fps = cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS)
    expected = frame_at(clip, int(2 * fps))
    h, w = expected.shape[:2]
    assert png.shape == expected.shape

    # the north line: horizontal at y = 0.5 h from x = 0.1 w to 0.9 w (ends are rounded caps)
    y = int(0.5 * h)
    row = png[y, int(0.1 * w) + 2:int(0.9 * w) - 2]
    assert (row == RED).all(axis=1).all()
    # ... and nowhere near it is the line: beyond the band, the row 0.1 h lower is not red
    assert not (png[y + int(0.1 * h), int(0.1 * w):int(0.9 * w)] == RED).all(axis=1).any()
    # the south line: vertical at x = 0.3 w from y = 0.8 h to 0.95 h
    x = int(0.3 * w)
    col = png[int(0.8 * h) + 2:int(0.95 * h) - 2, x]
    assert (col == RED).all(axis=1).all()

    # inside the band but off the line: tinted, not hidden and not pure red
    diag = (w * w + h * h) ** 0.5
    band_px = png[y + int(0.02 * diag) - 2, int(0.55 * w)]
    assert not (band_px == RED).all() and not (band_px == expected[y + int(0.02 * diag) - 2, int(0.55 * w)]).all()

    # away from every drawing and grid line, the pixels are the clip's own at 2 s, not frame 0
    patch = (slice(int(0.62 * h), int(0.68 * h)), slice(int(0.52 * w), int(0.58 * w)))
    assert np.array_equal(png[patch], expected[patch])
    assert not np.array_equal(png, frame_at(clip, 0))


def test_video_argument_overrides_config_source(tmp_path: Path, clip: Path) -> None:
    cfg = write_config(tmp_path, tmp_path / "missing.mp4")
    out = tmp_path / "frame.png"
    result = runner.invoke(app, ["calibrate", "--config", str(cfg), str(clip), "--out", str(out), "--no-grid"])
    assert result.exit_code == 0, result.output
    png = cv2.imread(str(out))
    assert png is not None
    expected = frame_at(clip, 0)
    h, w = expected.shape[:2]
    # no grid: the 0.7 h grid row is the clip's own pixels
    where = (int(0.7 * h), slice(int(0.52 * w), int(0.58 * w)))
    assert np.array_equal(png[where], expected[where])


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "frame.jpg"], "write a .png"),
    (["--out", "frame.png", "--at", "999"], "past the end"),
])
def test_errors_are_one_line(tmp_path: Path, clip: Path, args: list[str], message: str) -> None:
    args = [a if not a.startswith("frame") else str(tmp_path / a) for a in args]
    result = runner.invoke(app, ["calibrate", "--config", str(write_config(tmp_path, clip)), *args])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
