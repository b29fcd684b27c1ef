"""Prometheus metrics of the server (`metrics:` in server.yaml; common/metrics.py for the listener).

Most figures are read at scrape time from what already counts them: the server's health
counters (received, stored, dead-lettered by reason, units last seen), the writer (spool depth,
database up, points the database refused) and the subscriber (connected). Two are fed as they
happen, by the processing thread: write latency (a histogram needs each observation) and each
lane's published alert state (counted by rule and level, so the label set stays as small as the
rule set, whatever the number of lanes).

Per-unit seq gaps and resets are a seam for the per-unit seq tracking (issue 9): `record_seq`
takes a unit's cumulative gaps and resets as the tracker reports them, and they are exposed as
counters per gate and unit. Until a tracker calls it, the families are there with no samples.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.config import MetricsConfig
from common.metrics import MetricsEndpoint, serve_metrics
from server.health import Health
from wire.payloads import AlertMessage

PREFIX = "gatewatch_server"
#: a batch write takes milliseconds on a healthy database and up to the request timeout on a sick one
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Readers:
    """Where the scrape-time figures come from (the server's own objects, or fakes in tests)."""

    health: Health
    spool_points: Callable[[], int]
    database_up: Callable[[], bool]
    db_rejected_points: Callable[[], int]
    mqtt_connected: Callable[[], bool]


class ServerMetrics(Collector):
    def __init__(self, readers: Readers) -> None:
        self.readers = readers
        self.registry = CollectorRegistry()
        self.write_seconds = Histogram(
            f"{PREFIX}_write_seconds", "Time one batch write to the database took (database or spool path)",
            buckets=WRITE_BUCKETS, registry=self.registry,
        )
        self._lock = threading.Lock()
        self._alerts: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._seq: dict[tuple[str, str], tuple[int, int]] = {}
        self.registry.register(self)
        self.endpoint: MetricsEndpoint | None = None

    def start(self, cfg: MetricsConfig) -> None:
        self.endpoint = serve_metrics(cfg, self.registry, "server")

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None

    # -- fed by the processing thread -----------------------------------------------------------

    def on_write(self, seconds: float, points: int) -> None:
        self.write_seconds.observe(seconds)

    def on_alert_state(self, state: AlertMessage) -> None:
        """A lane's published alert state: its active alerts replace what the lane had."""
        with self._lock:
            self._alerts[(state.gate, state.lane)] = [(a.rule, a.level.value) for a in state.active]

    def record_seq(self, gate: str, unit: str, *, gaps: int, resets: int) -> None:
        """The seam for per-unit seq tracking: a unit's cumulative gaps and resets so far."""
        with self._lock:
            self._seq[(gate, unit)] = (gaps, resets)

    # -- scrape ---------------------------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        r = self.readers
        counts = r.health.counts()
        yield CounterMetricFamily(f"{PREFIX}_messages_received", "Unit messages received (own output excluded)",
                                  value=counts.received)
        yield CounterMetricFamily(f"{PREFIX}_messages_stored", "Valid unit messages whose batch is stored "
                                  "(in the database or the spool) and acknowledged", value=counts.stored)
        dead = CounterMetricFamily(f"{PREFIX}_messages_dead_lettered", "Messages rejected to the dead-letter topic",
                                   labels=["reason"])
        for reason, n in sorted(counts.rejected.items()):
            dead.add_metric([reason], n)
        yield dead
        yield CounterMetricFamily(f"{PREFIX}_db_rejected_points", "Points the database refused for good",
                                  value=r.db_rejected_points())
        yield GaugeMetricFamily(f"{PREFIX}_spool_points", "Points waiting in the spool for the database",
                                value=r.spool_points())
        yield GaugeMetricFamily(f"{PREFIX}_database_up", "1 while the database takes writes",
                                value=int(r.database_up()))
        yield GaugeMetricFamily(f"{PREFIX}_mqtt_connected", "1 while the broker link is up",
                                value=int(r.mqtt_connected()))
        seen = GaugeMetricFamily(f"{PREFIX}_unit_last_seen_timestamp_seconds",
                                 "When each unit's last valid message arrived (Unix time)", labels=["gate", "unit"])
        for (gate, unit), at in sorted(counts.last_seen.items()):
            seen.add_metric([gate, unit], at)
        yield seen
        with self._lock:
            alerts = Counter(a for active in self._alerts.values() for a in active)
            seq = dict(self._seq)
        active = GaugeMetricFamily(f"{PREFIX}_alerts_active", "Lanes with each alert active, by rule and level",
                                   labels=["rule", "level"])
        for (rule, level), n in sorted(alerts.items()):
            active.add_metric([rule, level], n)
        yield active
        gaps = CounterMetricFamily(f"{PREFIX}_unit_seq_gaps", "Seqs of each unit never received (lost records)",
                                   labels=["gate", "unit"])
        resets = CounterMetricFamily(f"{PREFIX}_unit_seq_resets", "Times each unit's seq went backwards",
                                     labels=["gate", "unit"])
        for (gate, unit), (g, rs) in sorted(seq.items()):
            gaps.add_metric([gate, unit], g)
            resets.add_metric([gate, unit], rs)
        yield gaps
        yield resets
