"""A small, varied, deterministic gate dataset written the way the server writes it.

Messages are built from the wire models, turned into points by server/schema.py and written by
the server's real InfluxDB v1 sink, so the database holds exactly what production would. Tests
compute what each query should return from these same Python objects, independently of InfluxDB.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from server.alerts import AlertEvent
from server.config import InfluxConfig
from server.health import ServerHealthMessage, health_fields
from server.schema import (
    alert_point,
    counts_lines,
    health_points,
    lines,
    server_health_point,
    status_points,
    unit_seq_point,
)
from server.sinks import InfluxV1Sink
from wire.payloads import (
    AlertLevel,
    CameraState,
    CountsMessage,
    HealthMessage,
    QueueStats,
    StatusMessage,
    UnitState,
    VehicleClass,
)

LANES = {("huu-nghi", "cam1"): ["lane1", "lane2"], ("tan-thanh", "cam1"): ["lane1"]}
WINDOW_S = 60.0
HOURS = 2
#: the window index (minute) from which the alert scenarios start
LATE = 110


@dataclass
class Dataset:
    start: datetime
    counts: list[CountsMessage] = field(default_factory=list)
    health: list[HealthMessage] = field(default_factory=list)
    status: list[StatusMessage] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    server: list[ServerHealthMessage] = field(default_factory=list)
    #: the server's per-unit acknowledgement at its health ticks: (gate, unit, at, gaps, resets)
    seq: list[tuple[str, str, datetime, int, int]] = field(default_factory=list)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=HOURS)


def make_dataset(now: datetime | None = None, seed: int = 7) -> Dataset:
    """Two whole hours ending at least an hour before `now` (inside the 90-day raw policy)."""
    now = now or datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS + 1)
    rnd = random.Random(seed)
    ds = Dataset(start)
    seq = 0
    for (gate, unit), lanes in LANES.items():
        ds.status.append(StatusMessage(gate=gate, unit=unit, seq=seq, state=UnitState.ONLINE,
                                       at=start, version="0.1.0", config_hash="abc"))
        for i in range(int(HOURS * 3600 / WINDOW_S)):
            t = start + timedelta(seconds=i * WINDOW_S)
            for lane in lanes:
                seq += 1
                counts = {
                    VehicleClass.TRUCK: {"in": rnd.randint(0, 6), "out": rnd.randint(0, 3)},
                    VehicleClass.CAR: {"in": rnd.randint(0, 9)},
                }
                if rnd.random() < 0.3:
                    counts[VehicleClass.BUS] = {"out": rnd.randint(1, 2)}
                waits = rnd.randint(0, 5)
                queue = QueueStats(
                    length_max=rnd.randint(0, 20), length_mean=round(rnd.uniform(0, 10), 2),
                    stationary_max=rnd.randint(0, 8), waits_n=waits,
                    wait_p50_s=round(rnd.uniform(10, 300), 1) if waits else None,
                    wait_p90_s=round(rnd.uniform(300, 900), 1) if waits else None,
                    wait_max_s=round(rnd.uniform(900, 1800), 1) if waits else None,
                    clearance_per_min=round(rnd.uniform(0.5, 6), 2),
                    # the last 10 minutes of tan-thanh's lane: over the one-hour alert threshold
                    expected_wait_s=4000.0 if gate == "tan-thanh" and i >= LATE else round(rnd.uniform(30, 2400), 1),
                )
                ds.counts.append(CountsMessage(
                    gate=gate, unit=unit, lane=lane, seq=seq, window_start=t, window_s=WINDOW_S,
                    counts=counts, queue=queue, frames=rnd.randint(200, 300),
                    camera_up=rnd.choice([1.0, 1.0, 1.0, 0.5]),
                ))
            # tan-thanh's unit goes silent after minute 100 (it published `offline` then)
            if i % 5 == 0 and not (gate == "tan-thanh" and i >= 100):
                seq += 1
                ds.health.append(HealthMessage(
                    gate=gate, unit=unit, seq=seq, at=t + timedelta(seconds=30), interval_s=300.0,
                    fps=round(rnd.uniform(5, 12), 2), inference_ms=round(rnd.uniform(60, 140), 1),
                    camera=CameraState.UP, outbox_depth=rnd.randint(0, 50), dropped_records=0,
                    # huu-nghi's outbox holds old records in the last 10 minutes
                    outbox_oldest_s=900.0 if gate == "huu-nghi" and i >= LATE else None,
                    cpu_temp_c=round(rnd.uniform(45, 80), 1), mem_mb=round(rnd.uniform(300, 600), 1),
                    uptime_s=float(i * WINDOW_S),
                ))
    ds.status.append(StatusMessage(gate="tan-thanh", unit="cam1", seq=seq + 1, state=UnitState.OFFLINE,
                                   at=start + timedelta(minutes=100), version="0.1.0", config_hash="abc"))
    # the server's own health every 2 minutes; its database is down (spool grows) from minute 90
    # to 100, and it stops reporting 10 minutes before the end
    received = 0
    for i in range(0, int(HOURS * 60) - 10, 2):
        received += rnd.randint(100, 200)
        down = 90 <= i < 100
        ds.server.append(ServerHealthMessage(
            server="central", at=start + timedelta(minutes=i, seconds=5), interval_s=120.0,
            messages_per_s=round(rnd.uniform(1, 5), 3), received=received, stored=received, rejected=i // 30,
            rejected_by_reason={"invalid": i // 30} if i >= 30 else {}, db_rejected_points=0,
            write_latency_ms_p50=round(rnd.uniform(2, 9), 3), write_latency_ms_p95=round(rnd.uniform(9, 40), 3),
            spool_depth=(i - 89) * 100 if down else 0, db_up=not down, mqtt_connected=True,
            units_last_seen_s={"huu-nghi/cam1": 1.0}, uptime_s=float(i * 60),
        ))
    # every 2 minutes the server writes each unit's acknowledgement; tan-thanh's unit lost 3 records
    # at minute 95 (an old loss, out of the alert's hour) and was re-imaged at minute 105 (a reset)
    for i in range(0, int(HOURS * 60) - 10, 2):
        at = start + timedelta(minutes=i, seconds=5)
        ds.seq.append(("huu-nghi", "cam1", at, 0, 0))
        ds.seq.append(("tan-thanh", "cam1", at, 0 if i < 40 else 3, 1 if i >= 105 else 0))
    raised = start + timedelta(minutes=20)
    ds.alerts += [
        AlertEvent("huu-nghi", "lane1", "congested", raised, AlertLevel.ORANGE, True, None, "queue 14 >= 8 for 60 s"),
        AlertEvent("huu-nghi", "lane1", "congested", raised + timedelta(minutes=25), AlertLevel.GREEN, False, None,
                   "cleared"),
        AlertEvent("tan-thanh", "lane1", "stalled", raised + timedelta(minutes=70), AlertLevel.RED, True, None,
                   "no crossings"),
    ]
    return ds


def write_dataset(url: str, ds: Dataset) -> None:
    """Through server.schema and the server's own v1 sink, as `gatewatch server` writes."""
    sink = InfluxV1Sink(InfluxConfig(url=url, database="gatewatch", create_database=False))
    points = [p for m in ds.health for p in health_points(m)]
    points += [p for m in ds.status for p in status_points(m)]
    points += [alert_point(a) for a in ds.alerts]
    points += [server_health_point(h.server, h.at, health_fields(h)) for h in ds.server]
    points += [unit_seq_point(g, u, at, {"gaps": gaps, "resets": resets}) for g, u, at, gaps, resets in ds.seq]
    try:
        batch = [line for m in ds.counts for line in counts_lines(m)] + lines(points)
        for i in range(0, len(batch), 2000):
            sink.write(batch[i:i + 2000])
    finally:
        sink.close()
