"""Access to ../shared footage and models: missing data fails loudly under CI, skips locally."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.paths import default_model, footage_dir, models_dir


def _missing(what: str) -> None:
    msg = f"{what} is missing (set GATEWATCH_SHARED, GATEWATCH_FOOTAGE or GATEWATCH_MODEL)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def footage(name: str | None = None) -> Path:
    folder = footage_dir()
    path = folder / name if name else folder / "ground_truth.csv"
    if not path.exists():
        _missing(str(path))
    return folder / name if name else folder


def model(name: str | None = None) -> Path:
    """The default model, or another file from the shared models folder."""
    path = models_dir() / name if name else default_model()
    if not path.exists():
        _missing(str(path))
    return path
