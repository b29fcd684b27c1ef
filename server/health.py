"""The server's own health: throughput, rejections by reason, write latency, spool depth, units seen.

Counters are updated from the processing thread and the spool-replay thread, and read by the
health tick; a lock keeps a snapshot consistent. The snapshot is published on MQTT (for a
watchdog or the edge) and written to InfluxDB (for Grafana), from the same object.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from server.schema import FieldValue
from server.stored import SeqHealth


class ServerHealthMessage(BaseModel):
    """Payload of `wire.topics.SERVER_HEALTH`. Server-only, so it lives here rather than in `wire`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(1, alias="schema")
    kind: Literal["server_health"] = "server_health"
    server: str
    at: AwareDatetime
    interval_s: float
    messages_per_s: float
    received: int
    stored: int
    rejected: int
    rejected_by_reason: dict[str, int]
    db_rejected_points: int
    write_latency_ms_p50: float | None
    write_latency_ms_p95: float | None
    spool_depth: int
    db_up: bool
    mqtt_connected: bool
    units_last_seen_s: dict[str, float] = Field(description="gate/unit -> seconds since its last valid message")
    uptime_s: float
    units_seq: dict[str, SeqHealth] = Field(
        default_factory=dict, description="gate/unit -> its end-to-end acknowledgement: stored through, gaps, resets"
    )
    seq_gaps: int = Field(0, description="seqs given up on, all units")
    seq_resets: int = Field(0, description="seq resets, all units")
    key_clashes: dict[str, int] = Field(
        default_factory=dict, description="gate/unit -> records that reused a key already written with another seq"
    )
    ahead_of_clock: dict[str, int] = Field(
        default_factory=dict,
        description="gate/unit -> messages stamped ahead of the clock tolerance (kept from alerts)",
    )
    spool_bytes: int = Field(0, description="the spool's files on disk")
    spool_full: bool = Field(False, description="the spool refused the last batch it was offered")
    held_batches: int = Field(0, description="batches kept unacknowledged: neither database nor spool could take them")
    bypassed_batches: int = Field(0, description="batches written straight to the database past a full spool")
    lanes_unsaved: bool = Field(False, description="learned lanes could not be saved to their file")
    mqtt_takeovers: int = Field(0, description="times another client took this server's MQTT session")


@dataclass(frozen=True)
class Counts:
    """The cumulative counters, copied under the lock (for /metrics)."""

    received: int
    stored: int
    rejected: dict[str, int]
    #: (gate, unit) -> Unix time of its last valid message
    last_seen: dict[tuple[str, str], float]


class Health:
    def __init__(self, server_id: str) -> None:
        self.server_id = server_id
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_tick = self._started
        self.received = 0
        self.stored = 0
        self._received_at_tick = 0
        self.rejected: Counter[str] = Counter()
        self._latencies: deque[float] = deque(maxlen=2000)
        self._last_seen: dict[str, float] = {}
        self.clashes: Counter[str] = Counter()
        self.ahead: Counter[str] = Counter()
        self.held = 0
        self._last_seen_at: dict[tuple[str, str], float] = {}

    def on_received(self) -> None:
        with self._lock:
            self.received += 1

    def on_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected[reason] += 1

    def on_stored(self, n: int) -> None:
        with self._lock:
            self.stored += n

    def on_unit(self, gate: str, unit: str) -> None:
        with self._lock:
            self._last_seen[f"{gate}/{unit}"] = time.monotonic()
            self._last_seen_at[(gate, unit)] = time.time()

    def counts(self) -> Counts:
        with self._lock:
            return Counts(self.received, self.stored, dict(self.rejected), dict(self._last_seen_at))

    def on_clash(self, gate: str, unit: str) -> None:
        with self._lock:
            self.clashes[f"{gate}/{unit}"] += 1

    def on_ahead(self, gate: str, unit: str) -> None:
        with self._lock:
            self.ahead[f"{gate}/{unit}"] += 1

    def on_held(self) -> None:
        with self._lock:
            self.held += 1

    def on_write(self, seconds: float, points: int) -> None:
        with self._lock:
            self._latencies.append(seconds * 1000.0)

    def snapshot(
        self, at: datetime, *, spool_depth: int, db_up: bool, mqtt_connected: bool, db_rejected_points: int,
        units_seq: dict[str, SeqHealth] | None = None, **more: int | bool,
    ) -> ServerHealthMessage:
        """The health now; `more` takes the other components' figures (spool_bytes, spool_full, ...)."""
        now = time.monotonic()
        with self._lock:
            interval = max(1e-6, now - self._last_tick)
            rate = (self.received - self._received_at_tick) / interval
            self._last_tick, self._received_at_tick = now, self.received
            lat = sorted(self._latencies)
            self._latencies.clear()
            seen = {k: round(now - v, 3) for k, v in sorted(self._last_seen.items())}
            return ServerHealthMessage(
                server=self.server_id, at=at, interval_s=round(interval, 3), messages_per_s=round(rate, 3),
                received=self.received, stored=self.stored, rejected=sum(self.rejected.values()),
                rejected_by_reason=dict(self.rejected), db_rejected_points=db_rejected_points,
                write_latency_ms_p50=_pct(lat, 0.5), write_latency_ms_p95=_pct(lat, 0.95),
                spool_depth=spool_depth, db_up=db_up, mqtt_connected=mqtt_connected,
                units_last_seen_s=seen, uptime_s=round(now - self._started, 3),
                units_seq=units_seq or {}, seq_gaps=sum(u.gaps for u in (units_seq or {}).values()),
                seq_resets=sum(u.resets for u in (units_seq or {}).values()), key_clashes=dict(self.clashes),
                ahead_of_clock=dict(self.ahead), held_batches=self.held, **more,
            )


def health_fields(h: ServerHealthMessage) -> dict[str, FieldValue | None]:
    """The snapshot as InfluxDB fields; per-reason counters become `rejected_<reason>` fields."""
    fields: dict[str, FieldValue | None] = {
        "messages_per_s": h.messages_per_s,
        "received": h.received,
        "stored": h.stored,
        "rejected": h.rejected,
        "db_rejected_points": h.db_rejected_points,
        "write_latency_ms_p50": h.write_latency_ms_p50,
        "write_latency_ms_p95": h.write_latency_ms_p95,
        "spool_depth": h.spool_depth,
        "db_up": h.db_up,
        "mqtt_connected": h.mqtt_connected,
        "units_seen": len(h.units_last_seen_s),
        "uptime_s": h.uptime_s,
        "seq_gaps": h.seq_gaps,
        "seq_resets": h.seq_resets,
        "key_clashes": sum(h.key_clashes.values()),
        "ahead_of_clock": sum(h.ahead_of_clock.values()),
        "spool_bytes": h.spool_bytes,
        "spool_full": h.spool_full,
        "held_batches": h.held_batches,
        "bypassed_batches": h.bypassed_batches,
        "mqtt_takeovers": h.mqtt_takeovers,
    }
    for reason, n in h.rejected_by_reason.items():
        fields[f"rejected_{reason}"] = n
    return fields


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return round(sorted_values[i], 3)
