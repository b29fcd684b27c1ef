"""Durable outbox: every message a unit sends is on disk before it goes on the wire.

A Pi at a border gate loses power, gets its process killed and loses its uplink for hours.
MQTT QoS 1 only protects a message while the client process holds it in memory, so the outbox
is the unit's real send queue: a row is written (and fsynced) before the first publish attempt
and deleted only once the broker has acknowledged it (PUBACK). Anything enqueued therefore
survives a power cut, a SIGKILL or a broker outage, and is re-sent, at least once, in order.

Why SQLite in WAL mode with ``synchronous=FULL``: WAL lets the drain thread read while the
pipeline appends, and with FULL every commit fsyncs the WAL, so a committed enqueue survives a
power cut. (WAL with NORMAL is safe against a process crash but may lose the last commits on
power loss, which is exactly the case a pole-mounted Pi meets.) The cost is one fsync per enqueue,
a few per 10 s window; acknowledgements are deleted in batches so they cost one fsync per batch.

The per-unit sequence number is assigned here, inside the enqueue transaction, and the next
value is persisted in the same commit, so it is monotonic across restarts and a subscriber sees a
gap only when something really was lost (the disk bound below).

The outbox is bounded (``max_bytes`` of stored messages): when full, the oldest rows go first,
because the newest state of a lane is worth more than the oldest. Every dropped row is counted
in a persisted counter that health messages report, so loss is never silent.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edge import EdgeError

log = logging.getLogger(__name__)

#: rough per-row cost of SQLite bookkeeping (rowid, record header, index entry), added to the
#: message bytes so that many tiny rows still count against the bound.
ROW_OVERHEAD_BYTES = 64
DROP_LOG_INTERVAL_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq     INTEGER PRIMARY KEY,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    created REAL    NOT NULL,
    size    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1), ('dropped', 0);
"""


class OutboxError(EdgeError):
    """The outbox file cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    topic: str
    payload: bytes
    created: float


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    bytes: int
    oldest_created: float | None
    dropped: int
    last_seq: int


class Outbox:
    """A bounded, durable FIFO of MQTT messages, keyed by the per-unit sequence number.

    One connection shared by the pipeline, health and drain threads behind a lock: the write
    rate is a handful of rows per second, far below what serialising costs.
    """

    def __init__(self, path: Path | str, max_bytes: int, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        self._depth, self._bytes = int(row[0]), int(row[1])
        self._unlogged_drops = 0
        self._drops_logged_at = float("-inf")
        log.info("outbox %s: %d message(s) waiting, %d bytes", self.path, self._depth, self._bytes)

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def enqueue(self, topic: str, build: Callable[[int], bytes]) -> int:
        """Assign the next sequence number, build the payload with it, and commit it to disk.

        The payload is built inside the transaction because the sequence number travels inside
        it: reserving a number and writing the message must be one atomic step, or a crash
        between them would leave a gap that looks like loss.
        """
        with self._lock:
            try:
                return self._enqueue(topic, build)
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc).lower():
                    raise OutboxError(f"outbox write failed: {exc}") from None
                # The filesystem is full before our own bound is: make room and try once more.
                log.error("outbox: disk full (%s); dropping oldest messages to make room", exc)
                self._rollback()
                self._drop_oldest(max(1, self._depth // 10), reason="disk full")
                try:
                    return self._enqueue(topic, build)
                except sqlite3.Error as exc2:
                    self._rollback()
                    raise OutboxError(f"outbox write failed: {exc2}") from None
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"outbox write failed: {exc}") from None

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _enqueue(self, topic: str, build: Callable[[int], bytes]) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            seq = self._meta("next_seq")
            payload = build(seq)
            size = len(payload) + len(topic) + ROW_OVERHEAD_BYTES
            dropped = self._make_room(size)
            db.execute(
                "INSERT INTO messages (seq, topic, payload, created, size) VALUES (?, ?, ?, ?, ?)",
                (seq, topic, payload, self._clock(), size),
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._depth += 1 - dropped[0]
        self._bytes += size - dropped[1]
        if dropped[0]:
            self._log_drops(dropped[0])
        return seq

    def _log_drops(self, n: int) -> None:
        """One line a minute at most: a full outbox during a day-long outage drops on every enqueue."""
        self._unlogged_drops += n
        now = time.monotonic()
        if now - self._drops_logged_at >= DROP_LOG_INTERVAL_S:
            log.warning(
                "outbox full (%d bytes bound): dropped %d oldest message(s) since the last report",
                self.max_bytes, self._unlogged_drops,
            )
            self._unlogged_drops = 0
            self._drops_logged_at = now

    def _make_room(self, size: int) -> tuple[int, int]:
        """Delete the oldest rows until `size` more bytes fit; runs inside the caller's transaction."""
        excess = self._bytes + size - self.max_bytes
        if excess <= 0:
            return (0, 0)
        n = freed = last = 0
        for seq, row_size in self._db.execute("SELECT seq, size FROM messages ORDER BY seq"):
            if freed >= excess:
                break
            n, freed, last = n + 1, freed + int(row_size), int(seq)
        if n:
            self._db.execute("DELETE FROM messages WHERE seq <= ?", (last,))
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (n,))
        return (n, freed)

    def _drop_oldest(self, n: int, reason: str) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute("SELECT seq, size FROM messages ORDER BY seq LIMIT ?", (n,)).fetchall()
            if rows:
                db.execute("DELETE FROM messages WHERE seq <= ?", (rows[-1][0],))
                db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (len(rows),))
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._depth -= len(rows)
        self._bytes -= sum(int(r[1]) for r in rows)
        log.warning("outbox: dropped %d oldest message(s) (%s)", len(rows), reason)

    def peek_after(self, seq: int, limit: int) -> list[OutboxRow]:
        """The next `limit` messages after `seq`, oldest first, for the drain loop."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, created FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [OutboxRow(int(s), str(t), bytes(p), float(c)) for s, t, p, c in rows]

    def ack(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged messages in one commit; unknown seqs (already dropped) are ignored."""
        seqs = list(seqs)
        if not seqs:
            return 0
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                params = [(s,) for s in seqs]
                sizes = 0
                n = 0
                for (s,) in params:
                    row = db.execute("SELECT size FROM messages WHERE seq = ?", (s,)).fetchone()
                    if row is not None:
                        sizes += int(row[0])
                        n += 1
                db.executemany("DELETE FROM messages WHERE seq = ?", params)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"outbox delete failed: {exc}") from None
            self._depth -= n
            self._bytes -= sizes
            return n

    def stats(self) -> OutboxStats:
        with self._lock:
            # The oldest row by seq, not MIN(created): O(1) on the rowid instead of a full scan.
            row = self._db.execute("SELECT created FROM messages ORDER BY seq LIMIT 1").fetchone()
            oldest = None if row is None else row[0]
            return OutboxStats(
                depth=self._depth,
                bytes=self._bytes,
                oldest_created=None if oldest is None else float(oldest),
                dropped=self._meta("dropped"),
                last_seq=self._meta("next_seq") - 1,
            )

    def __len__(self) -> int:
        return self._depth

    @property
    def last_seq(self) -> int:
        """The last sequence number assigned (0 before the first message ever)."""
        with self._lock:
            return self._meta("next_seq") - 1

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.debug("outbox checkpoint on close failed: %s", exc)
            self._db.close()
