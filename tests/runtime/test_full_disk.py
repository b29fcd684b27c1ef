"""The outbox on a full filesystem (a real 1 MiB tmpfs): it keeps headroom so that dropping the
oldest rows always works, storage errors are its own and counted, and it recovers by itself.

Invariant checked throughout: every seq the unit took is in the outbox, or was dropped at the
bound (counted), or was refused by the disk (counted) - nothing is lost silently.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.service.outbox import Outbox
from edge.service.runtime import EdgeRuntime
from tests.fixtures.mosquitto import Broker
from tests.fixtures.procs import wait_for
from tests.fixtures.smallfs import fill, free_bytes, small_filesystem
from tests.runtime.helpers import GATE, UNIT, FakePipeline, Subscriber, make_records, unit_config
from tests.runtime.test_process import spawn, write_config
from wire.payloads import HealthMessage

RESERVE = 128 * 1024


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "fs", "1m") as where:
        yield where


def accounted(box: Outbox) -> None:
    """Every seq taken is held, dropped or lost, and the held ones are the newest, in order."""
    stats = box.stats()
    assert stats.last_seq == stats.depth + stats.dropped + stats.lost
    held = [r.seq for r in box.peek_after(0, 100_000)]
    assert held == sorted(held) and (not held or held[-1] == stats.last_seq)


def test_an_outbox_that_fills_its_filesystem_drops_the_oldest_and_never_fails(fs: Path, tmp_path: Path) -> None:
    cfg = unit_config(tmp_path, 1, outbox={"path": str(fs / "outbox.sqlite3"), "reserve_bytes": RESERVE})
    runtime = EdgeRuntime(cfg, Outbox.from_config(cfg.outbox))  # never connected: everything stays
    records = make_records(1500)  # 3,000 records of ~450 bytes: about three times the filesystem
    lowest_free = free_bytes(fs)
    for i, r in enumerate(records):
        runtime.enqueue_record(r)
        if i % 100 == 0:
            runtime.send_health()
        lowest_free = min(lowest_free, free_bytes(fs))
    box = runtime.outbox
    stats = box.stats()
    assert runtime.storage_losses == 0 and stats.lost == 0  # the disk never refused a row
    assert stats.dropped > 1000  # the oldest went, counted
    assert lowest_free >= RESERVE  # the floor kept free on the filesystem...
    assert (fs / "outbox.sqlite3.reserve").stat().st_size == RESERVE  # ...and the reserve file
    accounted(box)
    # Acknowledging and confirming on the full filesystem work (they used to raise raw sqlite errors).
    held = [r.seq for r in box.peek_after(0, 100_000)]
    assert box.mark_acked(held, at=1.0) == len(held)
    assert box.stored(held[len(held) // 2]) == len(held) // 2 + 1
    assert len(box) == len(held) - len(held) // 2 - 1
    box.close()
    again = Outbox.from_config(cfg.outbox)  # and it opens again on the full filesystem
    assert again.aside is None
    assert again.enqueue("t", lambda s: b"%d" % s) == stats.last_seq + 1
    again.close()
    print(f"\n1 MiB tmpfs: {len(records)} records + health, {stats.depth} held, {stats.dropped} dropped "
          f"oldest-first, 0 lost; lowest free space {lowest_free // 1024} KiB (+ the {RESERVE // 1024} KiB reserve)")


def test_a_disk_filled_by_someone_else_is_met_by_recycling_the_oldest_rows(fs: Path, tmp_path: Path) -> None:
    cfg = unit_config(tmp_path, 1, outbox={"path": str(fs / "outbox.sqlite3"), "reserve_bytes": RESERVE},
                      health={"interval_s": 0.05})
    runtime = EdgeRuntime(cfg, Outbox.from_config(cfg.outbox), flush_timeout_s=0)
    for r in make_records(20):
        runtime.enqueue_record(r)
    hog = fs / "journal.log"
    fill(hog)  # the rest of the disk, gone
    assert free_bytes(fs) == 0

    # The pipeline keeps producing: the outbox gives back its reserve, then recycles its own rows.
    pipeline = FakePipeline(make_records(400, first=100), interval_s=0.002, hold_s=0.5)
    worker = threading.Thread(target=runtime.run, args=(pipeline,))
    worker.start()
    wait_for(lambda: pipeline.yielded == 800, 120, "the pipeline to go on counting")
    assert worker.is_alive()  # no exit, no restart loop
    box = runtime.outbox
    assert (fs / "outbox.sqlite3.reserve").stat().st_size == 0  # the reserve was given back
    stats = box.stats()
    assert stats.lost == 0 and runtime.storage_losses == 0 and stats.depth >= 20  # as many as it had
    accounted(box)

    hog.unlink()  # space comes back
    runtime.request_stop()
    worker.join(30)
    box = Outbox.from_config(cfg.outbox)
    try:
        assert (fs / "outbox.sqlite3.reserve").stat().st_size == RESERVE  # the reserve is back
        accounted(box)
        print(f"\ndisk filled by another file: reserve given back, {stats.depth} rows held by recycling the "
              f"oldest ({stats.dropped} dropped, counted), 0 lost; reserve restored once space returned")
    finally:
        box.close()


def test_when_the_disk_refuses_every_write_the_loss_is_counted_and_the_unit_recovers(
    mosquitto: Broker, fs: Path, tmp_path: Path
) -> None:
    """An empty outbox with no reserve (the disk was nearly full when it was set up) on a disk
    that fills: nothing to recycle, so the disk refuses. Each refused message is counted and is a
    gap at the server; counting goes on; health goes out straight; the outbox works again as
    soon as there is room."""
    cfg = unit_config(tmp_path, mosquitto.port, health={"interval_s": 0.2},
                      outbox={"path": str(fs / "outbox.sqlite3"), "reserve_bytes": 4 * 1024 * 1024})
    runtime = EdgeRuntime(cfg, Outbox.from_config(cfg.outbox), flush_timeout_s=0)
    assert not (fs / "outbox.sqlite3.reserve").exists() or (fs / "outbox.sqlite3.reserve").stat().st_size == 0
    sub = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/health")
    hog = fs / "journal.log"
    fill(hog)
    try:
        pipeline = FakePipeline(make_records(25), interval_s=0.05, hold_s=1.0)
        worker = threading.Thread(target=runtime.run, args=(pipeline,))
        worker.start()
        wait_for(lambda: pipeline.yielded == 50, 60, "the pipeline to go on counting")
        wait_for(lambda: any(isinstance(m, HealthMessage) and m.outbox_lost > 0 for m in sub.decoded("health")),
                 10, "health about the loss, sent straight")
        box = runtime.outbox
        assert box.lost >= 50 and box.lost == runtime.storage_losses
        accounted(box)
        health = [m for m in sub.decoded("health") if isinstance(m, HealthMessage)]
        assert {m.seq for m in health} <= set(range(1, box.last_seq + 1))  # under the numbers they took

        hog.unlink()  # space comes back: the next messages are stored again
        lost = box.lost
        before = runtime.records_enqueued
        runtime.enqueue_record(make_records(1, first=900)[0])
        assert runtime.records_enqueued == before + 1 and box.lost == lost
    finally:
        runtime.request_stop()
        sub.close()
    print(f"\nthe disk refused every write: {lost} message(s) counted lost, the unit kept counting and "
          f"sent {len(health)} health message(s) straight; stored again once space returned")


def test_a_unit_process_on_a_full_filesystem_keeps_running(mosquitto: Broker, fs: Path, tmp_path: Path) -> None:
    """It used to exit on raw sqlite errors and restart forever. Here the broker acknowledges but
    no server confirms, so every row stays until the disk bound drops it."""
    config = write_config(tmp_path, mosquitto.port, health={"interval_s": 0.5},
                          outbox={"path": str(fs / "outbox.sqlite3"), "reserve_bytes": RESERVE})
    sub = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/health")
    log = tmp_path / "edge.log"
    try:
        proc = spawn(config, 0, 1500, 0.001, 1.0, log)  # 3,000 records, then a second more
        assert proc.wait(180) == 0, log.read_text()[-3000:]
        text = log.read_text()
        assert "Traceback" not in text and "outbox full" in text
        wait_for(lambda: bool(sub.decoded("health")), 10, "health")
        last = [m for m in sub.decoded("health") if isinstance(m, HealthMessage)][-1]
        assert last.dropped_records > 1000 and last.outbox_lost == 0
        assert last.outbox_first_seq is not None and last.outbox_first_seq > last.dropped_records
    finally:
        sub.close()
