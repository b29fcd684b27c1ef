"""A damaged outbox: moved aside for a human, the unit starts, numbering never goes backwards,
and every message that could not be read back is counted (health `outbox_lost`) and shows as a
gap at the server (the unit's `outbox_first_seq` moves past it).

Each case starts from an outbox that a real process filled with 200 messages and that was then
SIGKILLed, so its WAL holds what a power cut would leave behind (200 messages stay below the
outbox's checkpoint interval, so the WAL still holds all of them).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.service.outbox import Outbox
from edge.service.runtime import EdgeRuntime
from edge.service.seq_mark import SLOT_BYTES, SeqMark
from tests.conftest import ROOT
from tests.fixtures.mosquitto import Broker
from tests.fixtures.procs import wait_for
from tests.runtime.helpers import GATE, UNIT, FakePipeline, StoredAcker, make_records, unit_config
from tests.runtime.test_process import spawn, write_config
from wire.payloads import HealthMessage

N = 200

_FILLER = """
import os, signal, sys
from edge.service.outbox import Outbox
from tests.runtime.helpers import GATE, UNIT, make_records
from wire.payloads import CountsMessage, encode
box = Outbox(sys.argv[1], 1 << 30)
for r in make_records(int(sys.argv[2]), lanes=1, first=1000):
    box.enqueue(f"gatewatch/v1/{GATE}/{UNIT}/counts", lambda s: encode(CountsMessage.from_record(r, s)))
os.kill(os.getpid(), signal.SIGKILL)
"""


def fill_and_kill(path: Path, n: int = N) -> None:
    """A real process enqueues `n` messages (none sent) and is SIGKILLed: no checkpoint, no close."""
    proc = subprocess.run([sys.executable, "-c", _FILLER, str(path), str(n)], cwd=ROOT, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert Path(f"{path}-wal").stat().st_size > 0


def truncate_to_zero(path: Path) -> None:
    os.truncate(path, 0)


def delete_wal(path: Path) -> None:
    Path(f"{path}-wal").unlink()


def cut_wal_in_half(path: Path) -> None:
    wal = Path(f"{path}-wal")
    os.truncate(wal, wal.stat().st_size // 2)


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)


def smash_a_page(path: Path) -> None:
    """A bad SD-card block: a page in the middle of the (checkpointed) database overwritten."""
    db = sqlite3.connect(path)  # fold the WAL in first, so the rows live in the main file
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek((size // 4096 // 2) * 4096)
        f.write(os.urandom(4096))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated to 0 bytes": truncate_to_zero,
    "WAL deleted after a SIGKILL": delete_wal,
    "WAL cut in half": cut_wal_in_half,
    "malformed file": garbage,
    "a page overwritten": smash_a_page,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_outbox_is_moved_aside_and_numbering_goes_on(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "outbox.sqlite3"
    fill_and_kill(path)
    DAMAGE[damage](path)
    before = sorted(p.name for p in tmp_path.iterdir())
    files = {suffix: Path(f"{path}{suffix}") for suffix in ("", "-wal")}
    found = {suffix: f.read_bytes() for suffix, f in files.items() if f.exists()}

    box = Outbox(path, 1 << 30, reserve_bytes=1 << 20)
    try:
        assert box.aside is not None and box.aside.exists(), "the damaged file is kept for a human"
        assert box.aside.parent == tmp_path and box.aside.name.startswith("outbox.sqlite3.damaged-")
        for suffix, content in found.items():  # exactly as it was found
            assert Path(f"{box.aside}{suffix}").read_bytes() == content
        carried = [r.seq for r in box.peek_after(0, 10_000)]
        assert carried == sorted(carried) and all(1 <= s <= N for s in carried)
        stats = box.stats()
        # every one of the 300 unconfirmed messages is either carried over or counted lost
        assert stats.lost + len(carried) == N
        assert stats.last_seq == N  # numbering never goes backwards...
        assert box.enqueue("t", lambda s: b"%d" % s) == N + 1  # ...and goes on after the old numbers
        first = box.stats().first_seq
        assert first == (carried[0] if carried else N + 1)
        lost_seqs = set(range(1, N + 1)) - set(carried)
        # what the server will never get lies below the unit's outbox_first_seq, or is counted lost
        assert len(lost_seqs) == stats.lost
        print(f"\n{damage}: {len(carried)} of {N} carried over, {stats.lost} counted lost, next seq {N + 2}; "
              f"moved aside: {sorted(p.name for p in tmp_path.iterdir() if 'damaged' in p.name)} (was {before})")
    finally:
        box.close()
    again = Outbox(path, 1 << 30, reserve_bytes=1 << 20)  # the fresh outbox is sound: no second move
    assert again.aside is None and again.last_seq == N + 1
    again.close()


def test_a_lost_outbox_file_and_a_lost_or_torn_seq_mark(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    mark = tmp_path / "outbox.sqlite3.seq"
    box = Outbox(path, 1 << 30)
    for _ in range(10):
        box.enqueue("t", lambda s: b"%d" % s)
    box.stored(4)
    box.close()

    # The seq mark is gone (or was never written by an older version): the database still knows.
    mark.unlink()
    box = Outbox(path, 1 << 30)
    assert (box.last_seq, box.lost, len(box)) == (10, 0, 6)
    box.close()

    # A torn write of the newer slot: the other slot still holds a valid, slightly older state.
    raw = bytearray(mark.read_bytes())
    newer = 0 if b"gen=2 " in raw[:SLOT_BYTES] else 1
    raw[newer * SLOT_BYTES + 20:newer * SLOT_BYTES + 40] = os.urandom(20)
    mark.write_bytes(bytes(raw))
    assert SeqMark(mark).mark.seq == 10

    # The database is deleted: nothing to move aside, the unconfirmed seqs are counted lost.
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        f.unlink(missing_ok=True)
    box = Outbox(path, 1 << 30)
    assert (box.last_seq, box.lost, len(box)) == (10, 6, 0)
    assert box.enqueue("t", lambda s: b"%d" % s) == 11
    box.close()


def test_a_unit_on_a_damaged_outbox_starts_and_the_server_sees_the_gap(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = unit_config(tmp_path, mosquitto.port, health={"interval_s": 0.5})
    fill_and_kill(cfg.outbox.path)
    cut_wal_in_half(cfg.outbox.path)
    acker = StoredAcker(mosquitto.port)
    try:
        runtime = EdgeRuntime(cfg, Outbox.from_config(cfg.outbox))
        lost = runtime.outbox.lost
        carried = {r.seq for r in runtime.outbox.peek_after(0, 10_000)}
        assert 0 < lost < N and lost + len(carried) == N
        runtime.run(FakePipeline(make_records(5), interval_s=0.3, hold_s=1.0))
        assert acker.sub is not None
        health = [m for m in acker.sub.decoded("health") if isinstance(m, HealthMessage)]
        assert health and all(h.outbox_lost == lost for h in health)
        last = runtime.outbox.last_seq
        wait_for(lambda: acker.through.get((GATE, UNIT), 0) >= last, 10, "stored through the last seq")
        received = acker.received()
        assert carried <= received and set(range(1, N + 1)) - carried == set(range(1, N + 1)) - received
        assert acker.gaps[(GATE, UNIT)] == lost  # exactly the lost seqs are a gap at the server
    finally:
        acker.stop()


def test_a_unit_process_starts_on_a_malformed_outbox(mosquitto: Broker, tmp_path: Path) -> None:
    """It used to exit at every start."""
    config = write_config(tmp_path, mosquitto.port)
    outbox = tmp_path / "outbox.sqlite3"
    fill_and_kill(outbox)
    garbage(outbox)
    log = tmp_path / "edge.log"
    proc = spawn(config, 0, 3, 0.01, 0, log)
    assert proc.wait(60) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "is damaged" in text and "moved aside to" in text and f"numbering continues at seq {N + 1}" in text
    assert "Traceback" not in text
    box = Outbox(outbox, 1 << 30)
    assert box.last_seq > N and box.lost == N and box.pending == 0
    box.close()
