"""Lane calibration: one real camera frame with the config's lanes drawn on it, as a PNG.

An installer on a ladder at the gate cannot judge normalised coordinates in a YAML file; they can
judge a picture. This draws exactly what the counter uses (edge.devtools.annotate.draw_lanes: line, its
tolerance band, queue zone), on a frame from the unit's own camera, over a 0.1 grid to read new
coordinates from. Lanes are drawn opaque (not blended as in the annotated video) so the PNG
shows the line's true pixels.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from common.errors import UsageError
from edge.config import UnitConfig, load_config
from edge.devtools.annotate import draw_lanes
from edge.stages.capture import CaptureError, FileSource, Image, LiveSource, open_source

GRID_COLOUR = (160, 160, 160)
#: colours draw_lanes uses for lines and labels (red) and queue zones (cyan), BGR
SOLID_COLOURS = ((0, 0, 255), (255, 255, 0))
BAND_ALPHA = 0.45
LIVE_TIMEOUT_S = 20.0


def grab_frame(cfg: UnitConfig, at_s: float = 0.0, timeout_s: float = LIVE_TIMEOUT_S) -> Image:
    """A frame from the config's source: `at_s` seconds into a file, or the first live frame."""
    source = open_source(cfg.source, start=time.time())
    try:
        if isinstance(source, FileSource) and at_s > 0:
            source = _seek(source, at_s)
        if isinstance(source, LiveSource):
            source.wait_open(timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frame = source.read()
            if frame is None:
                raise CaptureError(f"no frame at {at_s:.1f}s: the video is shorter")
            if frame.image is not None:
                return frame.image
        raise CaptureError(f"no frame from the camera within {timeout_s:.0f}s")
    finally:
        source.close()


def _seek(source: FileSource, at_s: float) -> FileSource:
    """A source whose next read is the frame at `at_s`, skipping by grabbing (no decode).

    FileSource's stride applies from its second read on, so with stride N the first read gives
    frame 0 and the second frame N.
    """
    skip = int(at_s * source.fps)
    if source.frame_count and skip >= source.frame_count:
        raise UsageError(
            f"--at {at_s:.1f}s is past the end of {source.path.name} ({source.frame_count / source.fps:.1f}s)"
        )
    if skip == 0:
        return source
    source.close()
    seeking = FileSource(source.path, source.start, stride=skip)
    seeking.read()
    return seeking


def draw_grid(image: Image) -> None:
    """Thin lines every 0.1 of width and height, labelled, for reading coordinates off the PNG."""
    h, w = image.shape[:2]
    for i in range(1, 10):
        x, y = round(i * w / 10), round(i * h / 10)
        cv2.line(image, (x, 0), (x, h - 1), GRID_COLOUR, 1)
        cv2.line(image, (0, y), (w - 1, y), GRID_COLOUR, 1)
        cv2.putText(image, f"{i / 10:.1f}", (x + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, GRID_COLOUR, 1)
        cv2.putText(image, f"{i / 10:.1f}", (2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, GRID_COLOUR, 1)


def render(image: Image, cfg: UnitConfig, grid: bool = True) -> Image:
    """The frame with the grid underneath and the lanes on top; the input is not modified.

    Bands are see-through (an opaque band would hide the road the installer is judging), while
    lines, labels and zone edges keep their exact colours: every pixel draw_lanes painted in a
    solid lane colour is copied back after blending.
    """
    base = image.copy()
    if grid:
        draw_grid(base)
    drawn = base.copy()
    draw_lanes(drawn, cfg)
    out = np.asarray(cv2.addWeighted(drawn, BAND_ALPHA, base, 1.0 - BAND_ALPHA, 0), dtype=np.uint8)
    for colour in SOLID_COLOURS:
        solid = np.all(drawn == colour, axis=2)
        out[solid] = drawn[solid]
    return out


def calibrate(
    config: Path, out: Path, video: str | None = None, at_s: float = 0.0, grid: bool = True
) -> Path:
    """Write the calibration PNG for a unit config, optionally on another video or camera."""
    if video is not None:
        from edge.devtools.defaults import load_replay_config

        cfg = load_replay_config(video, config, None, None, False)
    else:
        cfg = load_config(config)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: write a .png (lossless, so line colours stay exact)")
    image = render(grab_frame(cfg, at_s), cfg, grid)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), image):
        raise CaptureError(f"cannot write {out}")
    return out
