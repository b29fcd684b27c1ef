"""`python -m tests.runtime.edge_live_child CONFIG TOTALS_JSON`: the real service wiring
(`edge.service.cli.serve`, signal handlers included) around the real `Pipeline`, fed by a live
source on the wall clock and a scripted tracker that sends a car over every lane's line every
1.5 s. On exit it writes the pipeline's own running totals, per (lane, class, direction), so a
test can compare what was counted with what went out."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import UnitConfig, load_config
from edge.pipeline import Pipeline
from edge.service.cli import serve, setup_logging
from edge.stages.capture import Frame
from edge.stages.detections import Detections
from tests.edge.tracks import SIZE, Obs, frame
from wire.payloads import CameraState

FPS = 10.0
PERIOD_S = 1.5  # a car per lane this often
PATH = [300.0 + 40.0 * k for k in range(11)]  # bottom-centre y, frame by frame: over the line at 500


class LiveSource:
    """A camera on the wall clock: a frame every 1/FPS s, never ending."""

    state = CameraState.UP
    decode_ms = 0.0
    fps = FPS

    def __init__(self) -> None:
        self.index = 0
        self.image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)

    def read(self) -> Frame | None:
        time.sleep(1 / FPS)
        self.index += 1
        return Frame(time.time(), self.index, self.image)

    def close(self) -> None:
        pass


class LaneTraffic:
    """Car after car down through every lane's line (lanes side by side across the frame)."""

    last_inference_ms = 1.0
    last_tracking_ms = 0.1

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        self.k = 0

    def update(self, image: np.ndarray, t: float) -> Detections:
        self.k += 1
        obs: list[Obs] = []
        period = round(PERIOD_S * FPS)
        for lane in range(self.lanes):
            phase = self.k - lane * 5  # the lanes' cars are staggered by half a second
            n, step = divmod(phase, period)
            if phase >= 0 and step < len(PATH):
                x = SIZE[0] * (lane + 0.5) / self.lanes
                obs.append((1_000_000 * (lane + 1) + n, x, PATH[step]))
        return frame(obs)

    def reset(self) -> None:
        self.k = 0


def lanes_config(lanes: int) -> list[dict[str, Any]]:
    """Lane i owns the i-th third of the frame's width; its line runs across it at mid-height."""
    return [
        {"id": f"l{i + 1}", "line": {"a": [i / lanes, 0.5], "b": [(i + 1) / lanes, 0.5]}}
        for i in range(lanes)
    ]


def main(argv: list[str]) -> None:
    config, totals_out = argv[0], Path(argv[1])
    setup_logging("info")
    cfg = load_config(config)
    built: list[Pipeline] = []

    def factory(c: UnitConfig, on_event: Any) -> Pipeline:
        built.append(Pipeline(c, LiveSource(), LaneTraffic(len(c.lanes)), on_event=on_event))
        return built[0]

    serve(cfg, pipeline_factory=factory)
    totals = {"|".join(k): n for k, n in built[0].totals.items()}
    totals_out.write_text(json.dumps(totals))


if __name__ == "__main__":
    main(sys.argv[1:])
