"""Night enhancement: automatic on measured brightness, with hysteresis, and a config switch."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import NightConfig
from edge.stages.enhance import HYSTERESIS, NightEnhancer, mean_luma


def scene(level: float, seed: int = 0) -> np.ndarray:
    """A road-like frame with a dark car on it, scaled to a mean grey level, with sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:180, 0:320]
    day = 60 + 120 * (x / 320) + 40 * np.sin(y / 9.0)  # road shading and texture, mean about 120
    day[80:120, 140:200] = 40  # the car
    img = day * (level / 120) + rng.normal(0, 2.0, day.shape)
    return np.asarray(np.clip(np.repeat(img[..., None], 3, axis=2), 0, 255), dtype=np.uint8)


def car_contrast(image: np.ndarray) -> float:
    """Road just above the car minus the car, in grey levels."""
    grey = image if image.ndim == 2 else image.mean(axis=2)
    return float(grey[60:75, 140:200].mean() - grey[85:115, 150:190].mean())


def test_auto_enhances_only_dark_frames_with_hysteresis() -> None:
    night = NightEnhancer(NightConfig(mode="auto", dark_below=55))
    bright = scene(110)
    assert night(bright) is bright and not night.active
    dark = scene(30)
    out = night(dark)
    assert night.active and car_contrast(out) > 1.5 * car_contrast(dark)
    # just above the threshold but inside the hysteresis: stays on (a headlight does not flip it)
    night(scene(55 + HYSTERESIS / 2))
    assert night.active
    night(scene(55 + HYSTERESIS + 10))
    assert not night.active


@pytest.mark.parametrize("mode, changes", [("on", True), ("off", False)])
def test_switch_forces_enhancement_on_or_off(mode: str, changes: bool) -> None:
    night = NightEnhancer(NightConfig.model_validate({"mode": mode}))
    frame = scene(110)
    assert (night(frame) is not frame) == changes


def test_gamma_brings_the_mean_to_the_target() -> None:
    night = NightEnhancer(NightConfig(mode="on", target_luma=100, clahe_clip=0))  # gamma alone
    out = night(scene(25))
    assert abs(mean_luma(out) - 100) < 20
    assert out.shape == (180, 320, 3) and out.dtype == np.uint8


def test_grey_frames_are_enhanced_too() -> None:
    grey = scene(25)[:, :, 0]
    out = NightEnhancer(NightConfig(mode="on"))(grey)
    assert out.shape == grey.shape and car_contrast(out) > 1.5 * car_contrast(grey)


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError):
        NightConfig.model_validate({"mode": "sometimes"})
