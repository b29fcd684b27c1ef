"""Server ingest benchmark: N simulated units -> mosquitto -> `gatewatch server` -> influxd.

Everything is real and local: a throwaway mosquitto and influxd (Debian's binaries) on free
loopback ports with temp dirs, and the server as its own process (as in production, and so it
does not share a GIL with the load generator). Reported per row:

- records/s: window records from the first publish to the last one queryable in InfluxDB;
- latency percentiles from a record's publish (the moment an edge unit closes the window and
  sends it) to the moment InfluxQL returns it. Records of one lane are stored in order, so a
  poller that sees `last(seq)` of a lane reach S knows every record up to S is stored; the
  poll interval (50 ms) bounds the resolution;
- peak resident memory of the server process, and the CPU seconds it used for the row;
- with `--hostile R`, R bad messages per valid record (gatewatch.hostile: int64 overflow, deep
  JSON, huge integers, 1,000 directions, foreign lanes, future and too old windows) are mixed in,
  in turn; the server must dead-letter each, and the row's records/s counts the valid ones only.

Run: `gatewatch bench-server`. A developer tool: it lives beside the demo, not in the production
`server` package, because it starts its own broker and database (gatewatch.services).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common.errors import GatewatchError
from gatewatch.services import (
    Influx1,
    Process,
    QueryError,
    find_binary,
    start_influxd,
    start_mosquitto,
    wait_for,
)

POLL_S = 0.05


class BenchError(GatewatchError):
    """The benchmark cannot finish (records not stored in time)."""


def _series(influx: Influx1, database: str, q: str) -> list[dict[str, Any]]:
    try:
        return influx.query(q, database)
    except QueryError:
        return []  # "database not found" before the server's first write


@dataclass
class Row:
    units: int
    records: int
    seconds: float
    latencies_ms: list[float]
    peak_rss_mb: float
    hostile: int = 0
    cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else float("nan")


def lane_id(unit: int, lane: int) -> str:
    """Unique within the gate: a lane belongs to one unit."""
    return f"u{unit}-l{lane}"


def declared(units: int, lanes: int) -> dict[str, dict[str, dict[str, list[str]]]]:
    """`validation.gates` for the simulated units, as an installer would declare their lanes."""
    return {"bench": {f"u{u}": {lane_id(u, k): ["in", "out"] for k in range(lanes)} for u in range(units)}}


def _messages(units: int, lanes: int, per_lane: int) -> list[tuple[str, str, int, bytes]]:
    """(unit, lane, seq, payload) interleaved as units would send them; windows a day back."""
    from wire.payloads import CountsMessage, QueueStats, VehicleClass, encode

    base = datetime.fromtimestamp((time.time() // 10) * 10 - 86_400, UTC)
    out = []
    for i in range(per_lane):
        for u in range(units):
            for lane in range(lanes):
                m = CountsMessage(
                    gate="bench", unit=f"u{u}", lane=lane_id(u, lane), seq=i,
                    window_start=base + timedelta(seconds=10 * i),
                    window_s=10.0, counts={VehicleClass.TRUCK: {"in": i % 5, "out": 1}, VehicleClass.CAR: {"in": 2}},
                    queue=QueueStats(length_max=3, length_mean=1.5, stationary_max=2, clearance_per_min=6.0),
                    frames=120, camera_up=1.0,
                )
                out.append((m.unit, m.lane, i, encode(m)))
    return out


def _with_hostile(msgs: list[tuple[str, str, int, bytes]], share: float, units: int,
                  lanes: int) -> list[tuple[str, str, int, bytes, str]]:
    """(unit, lane, seq, payload, topic), valid records with `share` hostile messages per record
    spread evenly among them (their lane is empty: they are never waited for)."""
    from gatewatch.hostile import Target, hostile

    target = Target("bench", {f"u{u}": [lane_id(u, k) for k in range(lanes)] for u in range(units)})
    bad = hostile(int(len(msgs) * share), target)
    out: list[tuple[str, str, int, bytes, str]] = []
    owed = 0.0
    for unit, lane, seq, payload in msgs:
        out.append((unit, lane, seq, payload, f"gatewatch/v1/bench/{unit}/counts"))
        owed += share
        while owed >= 1:
            topic, body, _ = next(bad)
            out.append(("", "", -1, body, topic))
            owed -= 1
    return out


class UnitPublishers:
    """The simulated units: one `mosquitto_pub -l` (mosquitto's own C client) per topic, each its own
    connection as units in the field have, fed one payload per line.

    Why not paho in this process: the load generator shares the machine's two cores with the broker,
    the database and the server it measures, and paho costs about as much CPU per message to send as
    the server spends receiving one; the C client costs a small fraction of that, so the figure is
    the server's, not the generator's.
    """

    def __init__(self, port: int, topics: set[str], name: str, tmp: Path) -> None:
        binary = find_binary("mosquitto_pub")
        self._log = (tmp / f"{name}-publishers.log").open("wb")
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        for i, topic in enumerate(sorted(topics)):
            self._procs[topic] = subprocess.Popen(
                [binary, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-l", "-t", topic, "-i", f"{name}-u{i}"],
                stdin=subprocess.PIPE, stdout=self._log, stderr=self._log)

    def send(self, topic: str, payload: bytes, *, flush: bool) -> None:
        if b"\n" in payload:
            raise BenchError(f"a payload on {topic} holds a newline: it cannot go through mosquitto_pub -l")
        stdin = self._procs[topic].stdin
        assert stdin is not None
        stdin.write(payload + b"\n")
        if flush:
            stdin.flush()

    def close(self) -> None:
        """End of traffic: each client sends what it has left, then exits."""
        for p in self._procs.values():
            if p.stdin is not None and not p.stdin.closed:
                p.stdin.close()

    def stop(self) -> None:
        for p in self._procs.values():
            if p.stdin is not None and not p.stdin.closed:
                with contextlib.suppress(OSError):
                    p.stdin.close()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._log.close()


def run_row(tmp: Path, mq_port: int, influx: Influx1, units: int, records: int, lanes: int, rate: float,
            batch_size: int, progress: Any, hostile_share: float = 0.0) -> Row:
    import psutil
    import yaml

    db = f"bench_{units}u_{int(time.time() * 1000)}"
    per_lane = max(1, records // (units * lanes))
    msgs = _messages(units, lanes, per_lane)
    traffic = _with_hostile(msgs, hostile_share, units, lanes)
    cfg = {
        "server_id": "bench", "log_level": "WARNING",
        "mqtt": {"host": "127.0.0.1", "port": mq_port, "client_id": db, "receive_maximum": max(1000, batch_size * 2)},
        "influx": {"api": "v1", "url": influx.url, "database": db, "batch_size": batch_size},
        "spool": {"path": str(tmp / f"{db}.sqlite3")},
        "validation": {"gates": declared(units, lanes)},
        "alerts": {"silence_wall_clock": False},
        "health": {"interval_s": 5},
    }
    cfg_path = tmp / f"{db}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    server = Process([sys.executable, "-m", "gatewatch", "server", "--config", str(cfg_path)], tmp / f"{db}.log",
                     env=env, name="gatewatch server").start()
    assert server.proc is not None
    ps = psutil.Process(server.proc.pid)
    peak = 0.0
    pubs: UnitPublishers | None = None
    try:
        # the server's subscription must exist before the first publish
        try:
            wait_for(lambda: bool(_series(influx, db, "SELECT count(*) FROM server_health")), 60, "the server")
        except TimeoutError as exc:
            raise BenchError(f"{exc}; see {server.log}") from None
        sent_at: dict[tuple[str, str, int], float] = {}
        done: dict[tuple[str, str], int] = {}
        latencies: list[float] = []
        pubs = UnitPublishers(mq_port, {t[4] for t in traffic}, db, tmp)

        def publish() -> None:
            gap = 1.0 / rate if rate > 0 else 0.0
            t_next = time.monotonic()
            for unit, lane, seq, payload, topic in traffic:
                if gap and seq >= 0:
                    t_next += gap
                    delay = t_next - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                sent_at[(unit, lane, seq)] = time.monotonic()
                pubs.send(topic, payload, flush=bool(gap))
            pubs.close()

        cpu0 = sum(ps.cpu_times()[:2])
        t0 = time.monotonic()
        sender = threading.Thread(target=publish, daemon=True)
        sender.start()
        stored = 0
        deadline = t0 + 600
        while stored < len(msgs):
            if time.monotonic() > deadline:
                raise BenchError(f"only {stored}/{len(msgs)} records stored after 600 s")
            time.sleep(POLL_S)
            peak = max(peak, ps.memory_info().rss / 2**20)
            now = time.monotonic()
            for series in _series(influx, db, 'SELECT last("seq") FROM lane_queue GROUP BY "unit", "lane"'):
                key = (series["tags"]["unit"], series["tags"]["lane"])
                last = int(series["values"][0][1])
                for s in range(done.get(key, -1) + 1, last + 1):
                    t_sent = sent_at.get((*key, s))
                    if t_sent is not None:
                        latencies.append((now - t_sent) * 1000)
                done[key] = last
            new = sum(v + 1 for v in done.values())
            progress(new - stored)
            stored = new
        seconds = time.monotonic() - t0
        cpu_s = sum(ps.cpu_times()[:2]) - cpu0
        sender.join()
    finally:
        if pubs is not None:
            pubs.stop()
        server.stop()
    return Row(units, len(msgs), seconds, latencies, peak, len(traffic) - len(msgs), cpu_s)


def run_bench(units: list[int], records: int, lanes: int, rate: float, batch_size: int,
              hostile: list[float] | None = None) -> list[Row]:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gatewatch-bench-") as d, ExitStack() as stack:
        tmp = Path(d)
        mq = start_mosquitto(tmp / "mosquitto", max_queued_messages=1_000_000, autosave_interval_s=None,
                             log_types=("error", "warning"))
        stack.callback(mq.stop)
        influx = start_influxd(tmp / "influxd")
        stack.callback(influx.stop)
        with Progress(console=console, transient=True) as bar:
            for n in units:
                for share in hostile or [0.0]:
                    per_row = max(1, records // (n * lanes)) * n * lanes
                    task = bar.add_task(f"{n} units, hostile {share:g}", total=per_row)
                    rows.append(run_row(tmp, mq.port, influx, n, records, lanes, rate, batch_size,
                                        lambda k, t=task: bar.advance(t, k), share))
    table = Table(title=f"gatewatch server ingest: mosquitto -> server -> influxd 1.x "
                        f"({lanes} lanes/unit, batch {batch_size}, rate {'max' if rate <= 0 else f'{rate:g}/s'})")
    for col in ("units", "records", "hostile", "records/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
                "server peak RSS MB", "server CPU µs/record"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r.units), str(r.records), str(r.hostile), f"{r.rate:,.0f}", f"{r.pct(0.5):.0f}",
                      f"{r.pct(0.9):.0f}", f"{r.pct(0.99):.0f}", f"{max(r.latencies_ms, default=float('nan')):.0f}",
                      f"{r.peak_rss_mb:.0f}", f"{r.cpu_s / r.records * 1e6:.0f}")
    console.print(table)
    return rows
