"""The server's spool on a small, full, real filesystem (tmpfs): nothing stalls and nothing is lost.

With the database down, the spool fills its filesystem; the server then holds further batches
unacknowledged (the broker keeps them) instead of failing or dropping. Another process then takes
the last free byte. When the database returns, the spool's replayed rows must still be deletable
(the ballast gives the space back), fresh records go straight to the database past the full spool,
and every record sent is stored.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.health import ServerHealthMessage
from server.spool import Spool, SpoolFull
from tests.fixtures.influx import Influx1, QueryError
from tests.fixtures.procs import wait_for
from tests.server.helpers import (
    DECLARED,
    LANES,
    Listener,
    Publisher,
    ServerProcess,
    counts_message,
    expected_counts,
    influx_counts,
    wait_server_subscribed,
    write_config,
)
from wire.topics import SERVER_HEALTH

FS_BYTES = 2 << 20


@contextlib.contextmanager
def small_filesystem(where: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `where` (needs root); a skip elsewhere, a failure under CI."""
    where.mkdir(parents=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = f"cannot mount a tmpfs (root needed): {proc.stderr.strip()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> int:
    """Take every free byte, as another process on the same disk would."""
    n = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    n += os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return n


def stored(db: Influx1) -> dict[tuple[str, str, str, str, int], int]:
    try:
        return influx_counts(db)
    except QueryError:  # "database not found" until the server's first write
        return {}


def latest_health(watch: Listener) -> ServerHealthMessage | None:
    got = watch.snapshot()
    return ServerHealthMessage.model_validate_json(got[-1][1]) if got else None


def test_spool_on_a_full_filesystem_neither_stalls_nor_loses(tmp_path: Path, mosquitto, influxd: Influx1) -> None:
    messages = [counts_message(u, lane, i) for i in range(800) for u in ("u1", "u2", "u3") for lane in LANES[u]]
    assert len(messages) == 4800
    want = expected_counts(messages)
    with small_filesystem(tmp_path / "fs", FS_BYTES) as fs:
        cfg = write_config(tmp_path, mosquitto.port, influxd.url, validation={"gates": DECLARED},
                           spool={"path": str(fs / "spool.sqlite3"), "reserve_bytes": 256 << 10,
                                  "retry_min_s": 0.2, "retry_max_s": 1.0})
        server = ServerProcess(cfg, tmp_path / "server.log")
        server.start()
        watch = Listener(mosquitto.port, SERVER_HEALTH, "health-watch")
        try:
            wait_server_subscribed(mosquitto.port)
            wait_for(lambda: (h := latest_health(watch)) is not None and h.db_up, 20, "first write")
            influxd.stop()
            pub = Publisher(mosquitto.port, "edge-sim")
            for m in messages:
                pub.send_message(m)
            pub.close()  # every record PUBACKed by the broker
            wait_for(lambda: (h := latest_health(watch)) is not None and h.spool_full and h.held_batches > 0, 60,
                       "the spool to fill its filesystem and the server to hold batches")
            full = latest_health(watch)
            assert full is not None and full.spool_depth > 0 and full.spool_bytes < FS_BYTES
            assert server.alive()
            filler = fill(fs / "other-process.bin")  # and now not one byte is left
            assert os.statvfs(fs).f_bavail == 0, filler

            influxd.start()
            wait_for(lambda: stored(influxd) == want, 120, "every record stored after the outage")
            wait_for(lambda: (h := latest_health(watch)) is not None and h.spool_depth == 0, 30, "spool replayed")
            assert server.alive()
        finally:
            watch.close()
            code = server.stop() if server.alive() else None
    assert code == 0, server.output()[-2000:]
    out = server.output()
    assert "Traceback" not in out
    assert out.count("is full") == 1  # said once, not once per batch
    assert influxd.rows('SELECT count("frames") FROM lane_queue')[0]["count"] == len(messages)


def test_replayed_rows_are_forgotten_on_a_disk_without_a_free_byte(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", 1 << 20) as fs:
        spool = Spool(fs / "spool.sqlite3", reserve_bytes=64 << 10)
        batch = [f"lane_counts,gate=g,lane=l,unit=u count={i}i {i}" for i in range(1000)]
        with pytest.raises(SpoolFull):
            while True:
                spool.append(batch)
        held = spool.depth
        assert held >= 2000
        fill(fs / "other-process.bin")
        assert os.statvfs(fs).f_bavail == 0
        first = spool.peek(1000)
        assert first is not None and len(first.lines) == 1000
        spool.remove_through(first.last_id)  # with not one byte free
        assert spool.depth == held - 1000
        spool.close()
        spool = Spool(fs / "spool.sqlite3", reserve_bytes=64 << 10)  # the mark survives a restart
        assert spool.depth == held - 1000
        while (rest := spool.peek(5000)) is not None:
            spool.remove_through(rest.last_id)
        assert spool.depth == 0
        assert os.statvfs(fs).f_bavail * os.statvfs(fs).f_frsize > 256 << 10  # drained: the space is back
        spool.append(["after"])
        got = spool.peek(10)
        assert got is not None and got.lines == ["after"]
        spool.close()
