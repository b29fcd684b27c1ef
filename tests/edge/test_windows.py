"""Window aggregation and the pipeline wiring, with a scripted tracker and source (pure logic)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from edge.config import CountingConfig, LaneConfig, LineConfig, SourceConfig, UnitConfig
from edge.pipeline import Pipeline
from edge.stages.capture import Frame
from edge.stages.detections import Detections
from edge.stages.windows import WindowAggregator, window_floor
from tests.edge.tracks import SIZE, Obs, frame
from wire.payloads import CameraState, VehicleClass

T0 = 1_700_000_000.0  # a multiple of 10 s


class ScriptedSource:
    """Frames at fixed times; images are blank since the tracker is scripted."""

    def __init__(self, times: Sequence[float | None], fps: float = 10.0) -> None:
        self.times = times
        self.i = 0
        self._fps = fps
        self.image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)

    state = CameraState.UP
    decode_ms = 0.0

    @property
    def fps(self) -> float:
        return self._fps

    def read(self) -> Frame | None:
        if self.i >= len(self.times):
            return None
        t = self.times[self.i]
        self.i += 1
        if t is None:
            return None
        return Frame(t, self.i, self.image)

    def close(self) -> None:
        pass


class ScriptedTracker:
    last_inference_ms = 1.0
    last_tracking_ms = 0.5

    def __init__(self, frames: list[list[Obs]]) -> None:
        self.frames = frames
        self.i = 0

    def update(self, image: np.ndarray, t: float) -> Detections:
        obs = self.frames[self.i] if self.i < len(self.frames) else []
        self.i += 1
        return frame(obs)

    def reset(self) -> None:
        self.i = 0


def config(window_s: float = 10.0) -> UnitConfig:
    return UnitConfig(
        gate="g1",
        unit="u1",
        source=SourceConfig(kind="file", path="x.mp4"),
        lanes=[
            LaneConfig(
                id="l1",
                line=LineConfig(a=(0, 0.5), b=(1, 0.5), band=0.03),
                directions=("in", "out"),
                queue_zone=[(0, 0.1), (1, 0.1), (1, 0.5), (0, 0.5)],
            )
        ],
        counting=CountingConfig(window_s=window_s),
    )


def test_window_floor_aligns_to_wall_clock() -> None:
    assert window_floor(T0 + 13.7, 10) == T0 + 10


def test_records_per_window_with_counts_queue_and_uptime() -> None:
    # vehicle 1 crosses at ~3 s; vehicle 2 waits in the zone from 12 s and crosses at ~24 s
    times = [T0 + i / 10 for i in range(300)]
    frames: list[list[Obs]] = []
    for i in range(300):
        t = i / 10
        obs: list[Obs] = []
        if t < 6:
            obs.append((1, 300, 300 + t * 100))
        if 12 <= t < 30:
            y = 400 if t < 22 else 400 + (t - 22) * 150
            obs.append((2, 600, min(y, 990), VehicleClass.TRUCK))
        frames.append(obs)
    pipe = Pipeline(config(), ScriptedSource(times), ScriptedTracker(frames))
    records = list(pipe.records())
    assert [r.window_start for r in records] == [datetime.fromtimestamp(T0 + k * 10, UTC) for k in range(3)]
    assert [r.total() for r in records] == [1, 0, 1]
    assert records[0].counts == {VehicleClass.CAR: {"in": 1}}
    assert records[2].counts == {VehicleClass.TRUCK: {"in": 1}}
    assert records[1].queue.length_max == 1 and records[1].queue.stationary_max == 1
    assert records[2].queue.waits_n == 1
    # in the zone from 12.0 s; past the band (y > 542) first at 23.0 s
    assert records[2].queue.wait_p50_s == pytest.approx(11.0, abs=0.05)
    assert all(r.frames == 100 for r in records)
    assert records[0].camera_up == pytest.approx(1.0, abs=0.02)
    assert pipe.totals == {("l1", "car", "in"): 1, ("l1", "truck", "in"): 1}


def test_empty_windows_and_camera_gaps_are_reported() -> None:
    agg = WindowAggregator("g1", "u1", ["l1"], 10.0)
    out = []
    for i in range(50):  # 5 s of frames, then nothing until 35 s
        out += agg.add(T0 + i / 10, [], {})
    out += agg.add(T0 + 35.0, [], {})
    assert [r.window_start.timestamp() - T0 for r in out] == [0, 10, 20]
    assert out[0].camera_up == pytest.approx(0.5, abs=0.02)
    assert out[1].camera_up == 0 and out[1].frames == 0
    assert all(r.total() == 0 for r in out)


def test_stop_ends_the_replay_and_flushes() -> None:
    times = [T0 + i / 10 for i in range(100)]
    pipe = Pipeline(config(), ScriptedSource(times), ScriptedTracker([[]] * 100))
    it = pipe.records()
    pipe.stop()
    records = list(it)
    assert records == []  # stopped before the first frame: nothing to flush
