"""The embedded default unit config, so a newcomer can replay any clip with no config file.

One lane across the middle of the frame (vehicles moving down or up the image), with the
upper half as its queue zone: right for a camera looking along the road at the gate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge.config import LaneConfig, LineConfig, ModelConfig, SourceConfig, UnitConfig, load_config
from edge.paths import default_model


def default_config(video: str) -> UnitConfig:
    return UnitConfig(
        gate="demo",
        unit="replay",
        source=SourceConfig(kind="file", path=video),
        lanes=[
            LaneConfig(
                id="lane1",
                line=LineConfig(a=(0.0, 0.5), b=(1.0, 0.5)),
                directions=("down", "up"),
                queue_zone=[(0.0, 0.15), (1.0, 0.15), (1.0, 0.5), (0.0, 0.5)],
            )
        ],
        model=ModelConfig(path=default_model()),
    )


def load_replay_config(
    video: str, config: Path | None, model: Path | None, start: datetime | None, realtime: bool
) -> UnitConfig:
    """The config for a replay: the given file (or the embedded default) pointed at `video`."""
    cfg = load_config(config) if config else default_config(video)
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    update: dict[str, object] = {"realtime": realtime, "start_time": start or cfg.source.start_time}
    if video.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        update |= {"kind": "rtsp", "path": video}
    elif video.startswith("usb:") and video[4:].isdigit():
        update |= {"kind": "usb", "index": int(video[4:]), "path": None}
    else:
        update |= {"kind": "file", "path": str(Path(video).resolve())}
    src = cfg.source.model_copy(update=update)
    mdl = cfg.model.model_copy(update={"path": model.resolve()}) if model else cfg.model
    return cfg.model_copy(update={"source": src, "model": mdl})
