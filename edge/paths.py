"""Where shared test data lives: `../shared` beside the checkout, overridable by env vars."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    return Path(os.environ.get("GATEWATCH_SHARED", REPO_ROOT.parent / "shared")).resolve()


def footage_dir() -> Path:
    return Path(os.environ.get("GATEWATCH_FOOTAGE", shared_dir() / "footage")).resolve()


def models_dir() -> Path:
    return Path(os.environ.get("GATEWATCH_MODELS", shared_dir() / "models")).resolve()


def default_model() -> Path:
    env = os.environ.get("GATEWATCH_MODEL")
    return Path(env) if env else models_dir() / "yolov8n.pt"
