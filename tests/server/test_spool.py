"""Spool and writer: order kept across an outage, poison lines isolated, the spool survives a restart.

The sink here is a fake (the failure schedule is the point); the real databases are in test_outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from server.sinks import SinkRejected, SinkUnavailable
from server.spool import Spool, SpoolFull
from server.writer import DurableWriter
from tests.fixtures.procs import wait_for


class FlakySink:
    target = "fake"

    def __init__(self) -> None:
        self.down = False
        self.poison: set[str] = set()
        self.stored: list[str] = []
        self.lock = threading.Lock()

    def write(self, lines: Sequence[str]) -> None:
        with self.lock:
            if self.down:
                raise SinkUnavailable("down")
            if self.poison & set(lines):
                raise SinkRejected("field type conflict")
            self.stored.extend(lines)

    def close(self) -> None:
        pass


def test_spool_keeps_order_and_survives_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    spool.append(["a", "b"])
    spool.append(["c"])
    spool.append(["d", "e", "f"])
    assert spool.depth == 6
    spool.close()
    spool = Spool(tmp_path / "s.sqlite3")
    assert spool.depth == 6
    first = spool.peek(3)
    assert first is not None and first.lines == ["a", "b", "c"]
    spool.remove_through(first.last_id)
    assert spool.depth == 3
    rest = spool.peek(1)  # a batch is never split
    assert rest is not None and rest.lines == ["d", "e", "f"]


def test_writer_spools_while_down_and_replays_in_order(tmp_path: Path) -> None:
    sink = FlakySink()
    w = DurableWriter(sink, Spool(tmp_path / "s.sqlite3"), replay_batch=3, retry_min_s=0.05, retry_max_s=0.1)
    w.start()
    try:
        w.write(["1", "2"])
        sink.down = True
        w.write(["3"])
        w.write(["4", "5"])
        assert not w.db_up and w.spool.depth == 3
        sink.down = False
        w.write(["6"])  # must queue behind 3..5, not overtake them
        wait_for(lambda: w.spool.depth == 0 and w.db_up, 5, "replay")
        w.write(["7"])
    finally:
        w.stop()
    assert sink.stored == ["1", "2", "3", "4", "5", "6", "7"]


def test_a_poison_line_is_dropped_alone(tmp_path: Path) -> None:
    sink = FlakySink()
    sink.poison = {"bad"}
    w = DurableWriter(sink, Spool(tmp_path / "s.sqlite3"))
    w.write(["a", "b", "bad", "c", "d"])
    assert sink.stored == ["a", "b", "c", "d"]
    assert w.rejected_points == 1


def test_a_spool_left_by_a_previous_run_is_replayed_on_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite3")
    spool.append(["old1", "old2"])
    spool.close()
    sink = FlakySink()
    w = DurableWriter(sink, Spool(tmp_path / "s.sqlite3"), retry_min_s=0.05)
    assert not w.db_up  # nothing may overtake the backlog
    w.start()
    try:
        w.write(["new"])
        wait_for(lambda: w.spool.depth == 0, 5, "replay")
    finally:
        w.stop()
    assert sink.stored == ["old1", "old2", "new"]


class SlowSink(FlakySink):
    def write(self, lines: Sequence[str]) -> None:
        if not self.down:
            time.sleep(0.2)
        super().write(lines)


def test_a_full_spool_holds_with_the_database_down_and_is_passed_once_it_is_up(tmp_path: Path) -> None:
    sink = SlowSink()
    sink.down = True
    w = DurableWriter(sink, Spool(tmp_path / "s.sqlite3", max_bytes=200_000, reserve_bytes=0), replay_batch=100,
                      retry_min_s=0.05, retry_max_s=0.1)
    w.write(["first"])  # marks the database down
    spooled = 1
    with pytest.raises(SpoolFull):
        while True:
            w.write([f"line {spooled}"] * 100)
            spooled += 100
    with pytest.raises(SpoolFull):  # held, not dropped: the caller keeps the batch unacknowledged
        w.write(["held"])
    sink.down = False
    w.start()
    try:
        wait_for(lambda: w.db_up, 5, "the replay to reach the database")
        w.write(["fresh"])  # the spool is still full: straight to the database, ahead of the backlog
        assert w.bypassed == 1 and "fresh" in sink.stored and w.spool.depth > 0
        wait_for(lambda: w.spool.depth == 0, 30, "the backlog replayed")
    finally:
        w.stop()
    assert len(sink.stored) == spooled + 1
