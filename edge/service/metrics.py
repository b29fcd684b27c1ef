"""Prometheus metrics of an edge unit (`metrics:` in unit.yaml; common/metrics.py for the listener).

Counters and gauges are read at scrape time from what already counts them: the pipeline's stats
and running totals, the outbox, the publisher and the runtime's own counters. Nothing on the
per-frame path changes for them. The per-stage timings are the exception: a histogram needs every
observation, so `attach` chains onto the pipeline's per-frame hook and observes how much each
stage's running total grew with that frame (the pipeline keeps those totals anyway).

Names follow Prometheus conventions: `gatewatch_edge_` prefix, `_total` on counters, base units
(seconds, bytes). The unit's gate and id are on `gatewatch_edge_info`, not on every series:
Prometheus' target labels say which unit a scrape came from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from common.metrics import MetricsEndpoint, serve_metrics
from edge import __version__
from wire.payloads import CameraState

if TYPE_CHECKING:
    from edge.service.runtime import EdgeRuntime

PREFIX = "gatewatch_edge"
STAGES = ("decode", "inference", "tracking", "counting")
#: per-frame stage times run from well under a millisecond (counting) to seconds (a Pi's inference)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics(Collector):
    """Every figure of one running unit, on its own registry."""

    def __init__(self, runtime: EdgeRuntime, clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self._clock = clock
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            f"{PREFIX}_stage_seconds", "Time one frame spent in each pipeline stage",
            ["stage"], buckets=STAGE_BUCKETS, registry=self.registry,
        )
        self._last_stage: dict[str, float] = {}
        self.detections = 0
        self.registry.register(self)
        self.endpoint: MetricsEndpoint | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.endpoint = serve_metrics(self.runtime.cfg.metrics, self.registry, "edge")

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None

    def attach(self, pipeline: Any) -> None:
        """Observe per-frame stage times through the pipeline's `on_frame` hook, keeping any hook
        already there (a pipeline without one, like a test's fake, is simply not timed)."""
        if not hasattr(pipeline, "on_frame"):
            return
        previous = pipeline.on_frame
        stats = pipeline.stats

        def on_frame(*args: Any) -> None:
            self._observe(stats, args[1] if len(args) > 1 else None)
            if previous is not None:
                previous(*args)

        pipeline.on_frame = on_frame

    def _observe(self, stats: Any, detections: Any) -> None:
        totals: dict[str, float] = getattr(stats, "total_s", {})
        for stage in STAGES:
            now = totals.get(stage)
            if now is None:
                continue
            before = self._last_stage.get(stage, 0.0)
            self._last_stage[stage] = now
            self.stage_seconds.labels(stage).observe(max(0.0, now - before))
        if detections is not None:
            self.detections += len(detections)

    # -- scrape ---------------------------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return []  # no fixed description: the registry must not call collect() at registration

    def collect(self) -> Iterable[Metric]:
        rt = self.runtime
        cfg = rt.cfg
        yield InfoMetricFamily(f"{PREFIX}", "The unit this process is",
                               value={"gate": cfg.gate, "unit": cfg.unit, "version": __version__,
                                      "config_hash": cfg.config_hash()})
        yield from self._pipeline(rt.pipeline)
        yield _counter("records", "Window records enqueued for sending", rt.records_enqueued)
        yield _counter("events", "Crossing events enqueued for sending", rt.events_enqueued)
        yield _counter("health_messages", "Health messages enqueued", rt.health_sent)
        yield _counter("unsendable", "Records and events the wire contract refused (skipped)", rt.unsendable)
        stats = rt.outbox.stats()
        yield _gauge("outbox_messages", "Messages waiting in the outbox", stats.depth)
        yield _gauge("outbox_bytes", "Bytes of messages waiting in the outbox (its disk bound counts these)",
                     stats.bytes)
        yield _counter("outbox_dropped", "Messages the outbox dropped at its disk bound (oldest first; persisted)",
                       stats.dropped)
        oldest = 0.0 if stats.oldest_created is None else max(0.0, self._clock() - stats.oldest_created)
        yield _gauge("outbox_oldest_age_seconds", "Age of the oldest message waiting in the outbox (0 when empty)",
                     oldest)
        pub = rt.publisher
        yield _gauge("mqtt_connected", "1 while the broker link is up (a successful CONNACK)", int(pub.connected))
        yield _counter("mqtt_connects", "Successful broker connects", pub.connects)
        yield _counter("mqtt_reconnects", "Successful broker connects after the first", max(0, pub.connects - 1))
        yield _counter("mqtt_refusals", "Connects the broker refused (bad credentials, not authorised)",
                       pub.refusals)
        yield _counter("mqtt_published", "Outbox messages handed to the broker", pub.published)
        yield _counter("mqtt_acked", "Outbox messages the broker acknowledged (PUBACK)", pub.acked)

    def _pipeline(self, p: Any) -> Iterable[Metric]:
        stats = getattr(p, "stats", None)
        frames = getattr(stats, "frames", 0) if stats is not None else 0
        yield _counter("frames", "Frames processed by the pipeline", frames)
        yield _gauge("frames_per_second", "Frames processed per second since the pipeline started",
                     getattr(stats, "fps", 0.0) if stats is not None else 0.0)
        camera = getattr(stats, "camera", CameraState.DOWN) if stats is not None else CameraState.DOWN
        yield _gauge("camera_up", "1 while the camera delivers frames", int(camera == CameraState.UP))
        source = getattr(p, "source", None)
        yield _counter("frames_dropped", "Camera frames the live newest-frame loop skipped (the CPU was behind)",
                       getattr(source, "dropped", 0))
        yield _counter("detections", "Vehicle detections in processed frames", self.detections)
        crossings = CounterMetricFamily(f"{PREFIX}_crossings", "Line crossings counted",
                                        labels=["lane", "class", "direction"])
        totals: dict[tuple[str, str, str], int] = dict(getattr(p, "totals", {}) or {})
        for (lane, cls, direction), n in sorted(totals.items()):
            crossings.add_metric([lane, cls, direction], n)
        yield crossings


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)
