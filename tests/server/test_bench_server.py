"""`gatewatch bench-server` end to end, small: real mosquitto, real mosquitto_pub units, real server and influxd.

A smoke test of the benchmark's plumbing (it is otherwise only run by hand): every valid record
sent must be found stored, and the hostile messages mixed in must be sent and counted apart.
No time is asserted: speed is what the benchmark prints.
"""

from __future__ import annotations

from gatewatch.bench_server import run_bench


def test_bench_server_stores_every_record_and_counts_the_hostile_apart() -> None:
    clean, mixed = run_bench([2], records=160, lanes=2, rate=0.0, batch_size=50, hostile=[0.0, 1.0])
    assert (clean.units, clean.records, clean.hostile) == (2, 160, 0)
    assert (mixed.records, mixed.hostile) == (160, 160)
    for row in (clean, mixed):
        assert len(row.latencies_ms) == row.records  # each record seen stored, once
        assert row.rate > 0 and row.cpu_s > 0 and row.peak_rss_mb > 0
