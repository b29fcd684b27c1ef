"""Durable spool for batches the database could not take: SQLite in WAL mode, replayed in order.

A batch is acknowledged to the broker as soon as it is either in InfluxDB or committed here, so
the spool must survive a power cut: WAL with ``synchronous=FULL`` makes each commit durable.
Rows keep their insertion order (an AUTOINCREMENT key), so replay writes points in the order
they arrived.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from server import ServerError


class SpoolError(ServerError):
    """The spool file cannot be opened or written (disk full, permissions)."""


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    last_id: int
    lines: list[str]


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL,"
                " lines TEXT NOT NULL)"
            )
            row = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM batches").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot open spool {path}: {exc}") from None
        self._lock = threading.Lock()
        self._depth = int(row[0])

    @property
    def depth(self) -> int:
        """Points waiting for the database."""
        return self._depth

    def append(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        with self._lock:
            try:
                self._db.execute("INSERT INTO batches (n, lines) VALUES (?, ?)", (len(lines), json.dumps(list(lines))))
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot write spool {self.path}: {exc}") from None
            self._depth += len(lines)

    def peek(self, max_lines: int) -> SpooledBatch | None:
        """The oldest batches, whole, up to `max_lines` (at least one batch)."""
        with self._lock:
            out: list[str] = []
            last = 0
            for row_id, n, text in self._db.execute("SELECT id, n, lines FROM batches ORDER BY id"):
                if out and len(out) + n > max_lines:
                    break
                out.extend(json.loads(text))
                last = row_id
            return SpooledBatch(last, out) if out else None

    def remove_through(self, last_id: int) -> None:
        with self._lock:
            try:
                row = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM batches WHERE id <= ?", (last_id,)).fetchone()
                self._db.execute("DELETE FROM batches WHERE id <= ?", (last_id,))
            except sqlite3.Error as exc:
                raise SpoolError(f"cannot update spool {self.path}: {exc}") from None
            self._depth -= int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
