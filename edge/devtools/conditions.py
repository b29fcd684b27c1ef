"""What a gate unit really sees, derived from clean recorded clips.

Shared clips are recorded in daylight at 25-30 frames/s by decent cameras. A Raspberry Pi at a
gate processes 5-10 frames/s, the busiest hours run into the evening, and cheap cameras compress
hard. Each condition here turns a clean clip into one of those, deterministically (noise is
seeded by the frame index), so a count under a condition is reproducible and comparable between
gatewatch and the peer:

- ``fps10`` / ``fps5``: processed at 10 or 5 frames/s, dropping frames exactly as the live loop
  does when it takes the newest frame each time it is ready (`FileSource(rate=...)`);
- ``dark``: gain 0.35 with sensor noise, as at dusk with a small sensor;
- ``gray``: a monochrome (IR night) camera;
- ``jpeg``: heavy compression (JPEG quality 18, as a cheap camera's MJPEG or a starved RTSP stream);
- ``half``: half the resolution in each direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge import EdgeError
from edge.stages.capture import Image

DARK_GAIN = 0.35
DARK_NOISE_SIGMA = 5.0  # grey levels (0-255): read noise of a small sensor pushed to high gain
JPEG_QUALITY = 18


def _dark(image: Image, index: int) -> Image:
    rng = np.random.default_rng(index)
    noisy = image.astype(np.float32) * DARK_GAIN + rng.normal(0.0, DARK_NOISE_SIGMA, image.shape[:2])[..., None]
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _gray(image: Image, index: int) -> Image:
    return np.asarray(cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR), dtype=np.uint8)


def _jpeg(image: Image, index: int) -> Image:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise EdgeError("JPEG encoding failed")
    return np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), dtype=np.uint8)


def _half(image: Image, index: int) -> Image:
    h, w = image.shape[:2]
    return np.asarray(cv2.resize(image, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA),
                      dtype=np.uint8)


@dataclass(frozen=True)
class Condition:
    """A way of seeing a clip: a processing rate (frames/s of video time) and/or a frame transform."""

    name: str
    description: str
    fps: float | None = None
    transform: Callable[[Image, int], Image] | None = None


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("clean", "every frame, as recorded"),
        Condition("fps10", "processed at 10 frames/s (newest frame each time)", fps=10.0),
        Condition("fps5", "processed at 5 frames/s (newest frame each time)", fps=5.0),
        Condition("dark", f"gain {DARK_GAIN} + sensor noise (sigma {DARK_NOISE_SIGMA:g})", transform=_dark),
        Condition("gray", "monochrome (IR night camera)", transform=_gray),
        Condition("jpeg", f"JPEG quality {JPEG_QUALITY}", transform=_jpeg),
        Condition("half", "half resolution", transform=_half),
    )
}


def parse_conditions(spec: str) -> list[Condition]:
    """`all`, or a comma-separated list of names (e.g. `clean,fps5,dark`)."""
    names = list(CONDITIONS) if spec.strip() in ("", "all") else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise EdgeError(f"unknown condition(s) {', '.join(unknown)}; choose from {', '.join(CONDITIONS)} or all")
    return [CONDITIONS[n] for n in names]


def at_rate(fps: float) -> Condition:
    """Any processing rate, for `--fps N` (e.g. what a Pi 4 keeps up with)."""
    if fps <= 0:
        raise EdgeError(f"--fps must be positive, got {fps:g}")
    return Condition(f"fps{fps:g}", f"processed at {fps:g} frames/s (newest frame each time)", fps=fps)
