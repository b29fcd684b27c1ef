"""Durable spool for batches the database could not take: SQLite in WAL mode, replayed in order.

A batch is acknowledged to the broker (and to its units) as soon as it is either in InfluxDB or
committed here, so the spool must survive a power cut: WAL with ``synchronous=FULL`` makes each
commit durable. Rows keep their insertion order (an AUTOINCREMENT key), so replay writes points in
the order they arrived.

Disks fill. The spool is bounded (`max_bytes`, its files on disk) and leaves `reserve_bytes` of
the filesystem free; an append that would cross either is refused with `SpoolFull`, and the
caller keeps the batch unacknowledged (the broker and the units still hold it) or writes it
straight to the database. Deleting replayed rows writes to the WAL, which needs space of its own:
a ballast file of `reserve_bytes` beside the spool is given back to the filesystem when a delete
finds the disk full, and made again once the spool is empty. An emptied spool is re-created, so
the space it grew to returns to the filesystem instead of staying inside the SQLite file.

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

from server import ServerError


class SpoolError(ServerError):
    """The spool file cannot be opened or written (permissions, a damaged file, a full disk)."""


class SpoolFull(SpoolError):
    """The spool is at its size bound, or the filesystem at its reserve: nothing more goes in."""


class SpoolLocked(ServerError):
    """Another server process uses this spool."""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    last_id: int
    lines: list[str]


#: SQLite writes about this much beyond the payload for a batch (pages, WAL frame headers)
_OVERHEAD = 64 * 1024


def _is_full(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


class Spool:
    def __init__(self, path: Path, *, max_bytes: int = 1 << 30, reserve_bytes: int = 8 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self.ballast = path.with_name(f"{path.name}.reserve")
        self._lock = threading.Lock()
        self._lockfile = self._take_lock()
        try:
            self._open()
        except SpoolError:
            self._lockfile.close()
            raise
        self._ensure_ballast()

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
        # the ballast already holds reserve_bytes aside; without it, keep that much free ourselves
        reserve = 0 if self.ballast.exists() else self.reserve_bytes
        return st.f_bavail * st.f_frsize - 2 * need >= reserve

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
        """The oldest batches, whole, up to `max_lines` (at least one batch)."""
        with self._lock:
            out: list[str] = []
            last = 0
            try:
                for row_id, n, text in self._db.execute("SELECT id, n, lines FROM batches ORDER BY id"):
                    if out and len(out) + n > max_lines:
                        break
                    out.extend(json.loads(text))
                    last = row_id
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot read spool {self.path}: {exc}") from None
            return SpooledBatch(last, out) if out else None

    def remove_through(self, last_id: int) -> None:
        """Forget replayed rows. Needs no free space: a full disk gets the ballast back first."""
        with self._lock:
            try:
                n = self._delete(last_id)
            except sqlite3.Error as exc:
                if not _is_full(exc) or not self._drop_ballast():
                    raise SpoolError(f"cannot update spool {self.path}: {exc}") from None
                try:
                    n = self._delete(last_id)
                except sqlite3.Error as again:
                    raise SpoolError(f"cannot update spool {self.path}: {again}") from None
            self._depth -= n
            if self._depth == 0:
                self._recreate()

    def close(self) -> None:
        with self._lock:
            self._db.close()
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
            row = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM batches").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from None
        self._depth = int(row[0])

    def _delete(self, last_id: int) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM batches WHERE id <= ?", (last_id,)).fetchone()
        self._db.execute("DELETE FROM batches WHERE id <= ?", (last_id,))
        return int(row[0])

    def _recreate(self) -> None:
        """An empty spool starts over as a new file: the space it grew to goes back to the disk."""
        try:
            self._db.close()
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    self.path.with_name(self.path.name + suffix).unlink()
            self._open()
        except (OSError, SpoolError) as exc:
            raise SpoolError(f"cannot re-create the emptied spool {self.path}: {exc}") from None
        self._ensure_ballast()

    def _ensure_ballast(self) -> None:
        """Set `reserve_bytes` aside on disk for deletes, if there is room for it now."""
        if self.reserve_bytes <= 0 or self.ballast.exists():
            return
        try:
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < 2 * self.reserve_bytes:
                return
            fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
            finally:
                os.close(fd)
        except OSError:
            with contextlib.suppress(OSError):
                self.ballast.unlink()

    def _drop_ballast(self) -> bool:
        try:
            self.ballast.unlink()
        except OSError:
            return False
        return True
