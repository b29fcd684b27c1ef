"""Durable spool for batches the database could not take: SQLite in WAL mode, replayed in order.

A batch is acknowledged to the broker (and to its units) as soon as it is either in InfluxDB or
committed here, so the spool must survive a power cut: WAL with ``synchronous=FULL`` makes each
commit durable. Rows keep their insertion order (an AUTOINCREMENT key), so replay writes points in
the order they arrived.

Disks fill. The spool is bounded (`max_bytes`, its files on disk) and leaves `reserve_bytes` of
the filesystem free (for SQLite's own files and whatever else shares the disk); an append that
would cross either is refused with `SpoolFull`, and the caller keeps the batch unacknowledged (the
broker and the units still hold it) or writes it straight to the database.

Forgetting replayed rows must work on a disk with not one byte free, and an SQLite DELETE needs
space (its WAL frames). So rows are never deleted one by one: an 8-byte mark beside the spool,
overwritten in place (no new blocks), says through which row the spool is replayed, and once
everything is replayed the spool's files are unlinked and made anew, which gives their space
back. A crash between a replayed write and its mark replays that batch again: harmless, the
points are overwritten with themselves.

One server per spool: the file is locked (`flock`) while a server uses it, so a second server
started with the same config refuses to start instead of replaying the same rows twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from server import AnotherServer, ServerError


class SpoolError(ServerError):
    """The spool file cannot be opened or written (permissions, a damaged file, a full disk)."""


class SpoolFull(SpoolError):
    """The spool is at its size bound, or the filesystem at its reserve: nothing more goes in."""


class SpoolLocked(AnotherServer):
    """Another server process uses this spool."""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    last_id: int
    lines: list[str]


#: SQLite writes about this much beyond the payload for a batch (pages, WAL frame headers)
_OVERHEAD = 16 * 1024


def _is_full(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


class Spool:
    def __init__(self, path: Path, *, max_bytes: int = 1 << 30, reserve_bytes: int = 8 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self.mark_path = path.with_name(f"{path.name}.replayed")
        self._lock = threading.Lock()
        self._lockfile = self._take_lock()
        try:
            self._mark_fd = self._open_mark()
            self._open()
        except SpoolError:
            self._lockfile.close()
            raise

    # -- state -----------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Points waiting for the database."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        """What the spool's files take on disk now."""
        total = 0
        for p in (self.path, self.path.with_name(f"{self.path.name}-wal")):
            with contextlib.suppress(OSError):
                total += p.stat().st_size
        return total

    def room_for(self, nbytes: int) -> bool:
        """Whether a batch of `nbytes` may go in without crossing the bound or the reserve."""
        need = nbytes + _OVERHEAD
        if self.size_bytes + need > self.max_bytes:
            return False
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return False
        # twice: into the WAL now, into the database file at the next checkpoint
        return st.f_bavail * st.f_frsize - 2 * need >= self.reserve_bytes

    # -- operations ------------------------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        text = json.dumps(list(lines))
        with self._lock:
            if not self.room_for(len(text)):
                raise SpoolFull(f"spool {self.path} is full ({self.size_bytes} bytes on disk, bound "
                                f"{self.max_bytes}, reserve {self.reserve_bytes})")
            try:
                self._db.execute("INSERT INTO batches (n, lines) VALUES (?, ?)", (len(lines), text))
            except sqlite3.Error as exc:
                if _is_full(exc):
                    raise SpoolFull(f"spool {self.path}: {exc}") from None
                raise SpoolError(f"cannot write spool {self.path}: {exc}") from None
            self._depth += len(lines)

    def peek(self, max_lines: int) -> SpooledBatch | None:
        """The oldest batches not yet replayed, whole, up to `max_lines` (at least one batch)."""
        with self._lock:
            out: list[str] = []
            last = 0
            try:
                rows = self._db.execute("SELECT id, n, lines FROM batches WHERE id > ? ORDER BY id", (self._mark,))
                for row_id, n, text in rows:
                    if out and len(out) + n > max_lines:
                        break
                    out.extend(json.loads(text))
                    last = row_id
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot read spool {self.path}: {exc}") from None
            return SpooledBatch(last, out) if out else None

    def remove_through(self, last_id: int) -> None:
        """Forget the rows through `last_id`, replayed: a mark overwritten in place, no free space needed."""
        with self._lock:
            try:
                row = self._db.execute("SELECT COALESCE(SUM(n), 0), COALESCE(MAX(id), 0) FROM batches "
                                       "WHERE id > ? AND id <= ?", (self._mark, last_id)).fetchone()
                newest = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[0]
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot read spool {self.path}: {exc}") from None
            self._set_mark(last_id)
            self._depth -= int(row[0])
            if last_id >= newest:
                self._recreate()

    def close(self) -> None:
        with self._lock:
            self._db.close()
            os.close(self._mark_fd)
            self._lockfile.close()

    # -- files -----------------------------------------------------------------------------------

    def _take_lock(self) -> IO[str]:
        lock_path = self.path.with_name(f"{self.path.name}.lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = lock_path.open("a+")
        except OSError as exc:
            raise SpoolError(f"cannot open spool lock {lock_path}: {exc}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            raise SpoolLocked(f"another gatewatch server (pid {holder}) is using the spool {self.path}; "
                              "stop it first, or give this server its own spool.path and mqtt.client_id") from None
        with contextlib.suppress(OSError):
            f.truncate(0)
            f.write(f"{os.getpid()}\n")
            f.flush()
        return f

    def _open_mark(self) -> int:
        """The replayed-through mark: 8 bytes, allocated once, then only ever overwritten."""
        try:
            fd = os.open(self.mark_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot open spool mark {self.mark_path}: {exc}") from None
        try:
            raw = os.pread(fd, 8, 0)
            if len(raw) < 8:
                os.pwrite(fd, bytes(8), 0)
                os.fsync(fd)
                raw = bytes(8)
        except OSError as exc:
            os.close(fd)
            raise SpoolError(f"cannot write spool mark {self.mark_path}: {exc}") from None
        self._mark = int.from_bytes(raw, "little")
        return fd

    def _set_mark(self, last_id: int) -> None:
        try:
            os.pwrite(self._mark_fd, last_id.to_bytes(8, "little"), 0)
            os.fsync(self._mark_fd)
        except OSError as exc:
            raise SpoolError(f"cannot write spool mark {self.mark_path}: {exc}") from None
        self._mark = last_id

    def _open(self) -> None:
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # after a checkpoint the WAL is cut back to this, so the bound measures rows, not history
            self._db.execute("PRAGMA journal_size_limit=1048576")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL,"
                " lines TEXT NOT NULL)"
            )
            row = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM batches WHERE id > ?", (self._mark,)).fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from None
        self._depth = int(row[0])

    def _recreate(self) -> None:
        """Everything is replayed: the files go, and their space with them. The mark is reset first:
        a crash in between leaves the old rows to be replayed again, never new rows taken for old."""
        self._set_mark(0)
        try:
            self._db.close()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    self.path.with_name(self.path.name + suffix).unlink()
        except OSError as exc:
            raise SpoolError(f"cannot remove the replayed spool {self.path}: {exc}") from None
        self._open()
