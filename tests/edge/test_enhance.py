"""Night enhancement: automatic on measured brightness, with hysteresis, and a config switch."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import NightConfig
from edge.stages.enhance import HYSTERESIS, NightEnhancer, mean_luma


def scene(level: float, seed: int = 0) -> np.ndarray:
    """A road-like frame: texture around a mean grey level."""
    rng = np.random.default_rng(seed)
    base = rng.normal(level, level / 3 + 1, (90, 160, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_auto_enhances_only_dark_frames_with_hysteresis() -> None:
    night = NightEnhancer(NightConfig(mode="auto", dark_below=55))
    bright = scene(110)
    assert night(bright) is bright and not night.active
    dark = scene(30)
    out = night(dark)
    assert night.active and mean_luma(out) > mean_luma(dark) + 30
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
    night = NightEnhancer(NightConfig(mode="on", target_luma=100, clahe_clip=0))
    out = night(scene(25))
    assert abs(mean_luma(out) - 100) < 20
    assert out.shape == (90, 160, 3) and out.dtype == np.uint8


def test_grey_frames_are_enhanced_too() -> None:
    grey = scene(25)[:, :, 0]
    out = NightEnhancer(NightConfig(mode="on"))(grey)
    assert out.shape == grey.shape and mean_luma(out) > mean_luma(grey) + 30


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError):
        NightConfig.model_validate({"mode": "sometimes"})
