"""The embedded default unit config, so a newcomer can replay any clip with no config file.

One lane across the middle of the frame (vehicles moving down or up the image), with the
upper half as its queue zone: right for a camera looking along the road at the gate.
"""

from __future__ import annotations

from edge.config import LaneConfig, LineConfig, ModelConfig, SourceConfig, UnitConfig
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
