"""The edge pipeline: frames -> tracked detections -> lane crossings and queues -> window records.

Every stage is injected (source, tracker, clock through the source's timestamps), so the same
code runs a Pi camera at a gate, a replayed clip on a laptop, and synthetic tracks in tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edge.config import ModelConfig, UnitConfig
from edge.stages.capture import Frame, FrameSource, open_source
from edge.stages.counting import Crossing, LaneCounter
from edge.stages.detections import Detections
from edge.stages.detector import Tracker
from edge.stages.queues import QueueMonitor, QueueSnapshot
from edge.stages.windows import WindowAggregator, window_floor
from wire.payloads import CameraState, CrossingEvent, WindowRecord

log = logging.getLogger(__name__)

FrameHook = Callable[[Frame, Detections, list[Crossing], dict[str, QueueSnapshot]], None]
EventSink = Callable[[CrossingEvent], None]


@dataclass
class PipelineStats:
    """Live figures for health messages and totals for benchmarks."""

    frames: int = 0
    fps: float = 0.0
    inference_ms: float = 0.0
    camera: CameraState = CameraState.DOWN
    total_s: dict[str, float] = field(
        default_factory=lambda: {"decode": 0.0, "inference": 0.0, "tracking": 0.0, "counting": 0.0}
    )
    started: float = field(default_factory=time.perf_counter)

    def mean_ms(self, stage: str) -> float:
        return self.total_s[stage] * 1000 / self.frames if self.frames else 0.0


class Pipeline:
    def __init__(
        self,
        cfg: UnitConfig,
        source: FrameSource,
        tracker: Tracker,
        *,
        on_event: EventSink | None = None,
        on_frame: FrameHook | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.tracker = tracker
        self.on_event = on_event
        self.on_frame = on_frame
        self.stats = PipelineStats()
        self.counters: dict[str, LaneCounter] = {}
        self.monitors = {lane.id: QueueMonitor(lane.stationary_px_s) for lane in cfg.lanes}
        self.windows = WindowAggregator(
            cfg.gate, cfg.unit, [lane.id for lane in cfg.lanes], cfg.counting.window_s, cfg.counting.class_settle_s
        )
        self.totals: dict[tuple[str, str, str], int] = {}  # (lane, class, direction) -> count
        self._stopped = False

    def stop(self) -> None:
        """Ask `records()` to finish after the current frame (e.g. on SIGTERM)."""
        self._stopped = True

    def _lane_counters(self, width: int, height: int) -> dict[str, LaneCounter]:
        if not self.counters:
            self.counters = {
                lane.id: LaneCounter(lane, self.cfg.counting, width, height) for lane in self.cfg.lanes
            }
        return self.counters

    def process(self, frame: Frame) -> list[WindowRecord]:
        """Run one frame (or camera-down tick) through every stage; return closed windows."""
        self.stats.camera = self.source.state
        if frame.image is None:
            return self.windows.advance(frame.t)
        self.stats.total_s["decode"] += self.source.decode_ms / 1000
        dets = self.tracker.update(frame.image, frame.t)
        self.stats.inference_ms = self.tracker.last_inference_ms
        self.stats.total_s["inference"] += self.tracker.last_inference_ms / 1000
        self.stats.total_s["tracking"] += self.tracker.last_tracking_ms / 1000
        t0 = time.perf_counter()
        h, w = frame.image.shape[:2]
        crossings: list[Crossing] = []
        snapshots: dict[str, QueueSnapshot] = {}
        for lane_id, counter in self._lane_counters(w, h).items():
            lane_crossings = counter.update(dets, frame.t)
            crossings.extend(lane_crossings)
            if counter.zone is not None:
                snapshots[lane_id] = self.monitors[lane_id].update(
                    frame.t, counter.present(frame.t), lane_crossings
                )
        self._report(crossings)
        records = self.windows.add(frame.t, crossings, snapshots)
        self.stats.total_s["counting"] += time.perf_counter() - t0
        self.stats.frames += 1
        elapsed = time.perf_counter() - self.stats.started
        self.stats.fps = self.stats.frames / elapsed if elapsed > 0 else 0.0
        if self.on_frame is not None:
            self.on_frame(frame, dets, crossings, snapshots)
        return records

    def _report(self, crossings: list[Crossing]) -> None:
        """Running totals and, if wanted, one event per crossing."""
        for c in crossings:
            key = (c.lane, c.vehicle_class.value, c.direction)
            self.totals[key] = self.totals.get(key, 0) + 1
            if self.on_event is not None:
                self.on_event(
                    CrossingEvent(
                        lane=c.lane,
                        at=datetime.fromtimestamp(c.t, UTC),
                        vehicle_class=c.vehicle_class,
                        direction=c.direction,
                        track_id=max(c.track_id, 0),
                        wait_s=c.wait_s,
                    )
                )

    def records(self) -> Iterator[WindowRecord]:
        """Window records as their windows close; at the end of a file, the last partial one."""
        self.stats.started = time.perf_counter()
        while not self._stopped:
            frame = self.source.read()
            if frame is None:
                break
            yield from self.process(frame)
        # end of stream: crossings still settling their class go into the windows they happened in
        pending = [c for counter in self.counters.values() for c in counter.flush()]
        self._report(pending)
        self.windows.add_crossings(pending)
        yield from self.windows.flush()

    def close(self) -> None:
        self.source.close()


def replay_start(cfg: UnitConfig, now: float | None = None) -> float:
    """Wall-clock time of a replayed file's first frame: fixed by config, else now floored to
    the window so the first window is complete."""
    if cfg.source.start_time is not None:
        return cfg.source.start_time.timestamp()
    return window_floor(time.time() if now is None else now, cfg.counting.window_s)


def make_tracker(model: ModelConfig) -> Tracker:
    """The one place that picks the real detector and tracker for a model config: the live unit,
    replay, eval and the benchmark all take what a user with these settings would get."""
    from edge.stages.detector import build_tracker

    return build_tracker(model)


def build_pipeline(
    cfg: UnitConfig,
    *,
    on_event: EventSink | None = None,
    on_frame: FrameHook | None = None,
    tracker: Tracker | None = None,
    source: FrameSource | None = None,
) -> Pipeline:
    """Wire the real source and the real tracker unless others are injected."""
    if tracker is None:
        tracker = make_tracker(cfg.model)
    if source is None:
        source = open_source(cfg.source, replay_start(cfg), cfg.model.vid_stride)
    return Pipeline(cfg, source, tracker, on_event=on_event, on_frame=on_frame)
