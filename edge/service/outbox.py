"""Durable outbox: every message a unit sends is on disk before it goes on the wire, and stays
there until the server says it is stored.

A Pi at a border gate loses power, gets its process killed and loses its uplink for hours; the
broker can crash too. MQTT QoS 1 only protects a message while the client holds it, and a broker's
PUBACK only while the broker keeps it in memory (mosquitto saves to disk every `autosave_interval`).
So the outbox is the unit's real send queue: a row is written (and fsynced) before the first
publish attempt, marked *acked* when the broker's PUBACK arrives (it stays on disk), and deleted
only when the server's retained `stored` message says its seq is durable on the server. A row
acked but not stored for `resend_after_s` is published again (see `Publisher`).

Why SQLite in WAL mode with ``synchronous=FULL``: WAL lets the drain read while the pipeline
appends, and with FULL every commit fsyncs the WAL, so a committed enqueue survives a power cut.
(WAL with NORMAL is safe against a process crash but may lose the last commits on power loss,
which is exactly the case a pole-mounted Pi meets.)

Sequence numbers are handed out by the seq mark (`seq_mark.py`), a small file beside the database
written before each row is committed, so numbering never goes backwards, even when the database is
lost. At start-up the database is checked against the mark; a damaged one (not a database, failing
`quick_check`, or missing commits the mark proves it had: a deleted or cut WAL, a truncated file)
is moved aside for a human, the rows that can still be read are carried over into a fresh one, and
what could not be is counted as lost (health `outbox_lost`; the server sees the seqs as a gap).

Disk space: the outbox is bounded by ``max_bytes`` of stored messages, and it also never lets its
filesystem's free space fall below ``reserve_bytes``: when either would be crossed, the oldest rows
go first (counted, as `dropped`), because the newest state of a lane is worth more than the oldest,
and the new row reuses their pages. The WAL is kept small (frequent checkpoints) so that it does
not eat the disk, and a reserve file of ``reserve_bytes`` is given back when the disk fills anyway
(someone else's logs): deleting rows needs WAL space too, and without the reserve a full disk
could be neither written nor cleaned. Every storage failure is an `OutboxError`; the runtime counts
the loss and keeps counting vehicles, and the outbox recovers by itself once space returns.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from edge import EdgeError
from edge.service.outbox_repair import check_and_repair
from edge.service.seq_mark import Mark, SeqMark, SeqMarkError

if TYPE_CHECKING:
    from edge.config import OutboxConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

#: rough per-row cost of SQLite bookkeeping (rowid, record header, index entry), added to the
#: message bytes so that many tiny rows still count against the bound.
ROW_OVERHEAD_BYTES = 64
DROP_LOG_INTERVAL_S = 60.0
#: when the filesystem forces a drop, drop at least this share of the outbox at once, so a full
#: disk costs one delete per few dozen enqueues rather than one per enqueue
DROP_FRACTION = 0.05
DEFAULT_RESERVE_BYTES = 8 * 1024 * 1024
#: ledger entries given up per enqueue while the disk is short of space
LEDGER_YIELD_ROWS = 16

_TABLES = """
CREATE TABLE IF NOT EXISTS messages (
    seq     INTEGER PRIMARY KEY,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    created REAL    NOT NULL,
    size    INTEGER NOT NULL,
    acked   REAL,
    key     TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1), ('dropped', 0), ('stored', 0);
CREATE TABLE IF NOT EXISTS emitted (
    key   TEXT PRIMARY KEY,
    at    REAL NOT NULL,
    value BLOB NOT NULL
);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS messages_key ON messages (key) WHERE key IS NOT NULL;
CREATE INDEX IF NOT EXISTS emitted_at ON emitted (at);
"""


class OutboxError(EdgeError):
    """The outbox cannot be opened or written. `seq` is the number the failed message had
    already taken (it shows as a gap at the server), or None if none was taken."""

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class OutboxFull(OutboxError):
    """The disk refused a write even after the outbox made room (the disk is full of other files)."""


class OutboxCorrupt(OutboxError):
    """The database went bad while running; a restart moves it aside and carries on."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    topic: str
    payload: bytes
    created: float
    acked: float | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the outbox remembers about an emitted message, keyed (e.g. a lane's window)."""

    key: str
    at: float
    value: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    """rows on disk: not yet sent, or sent and not yet confirmed stored by the server"""
    pending: int
    """rows the broker has not acknowledged yet"""
    bytes: int
    oldest_created: float | None
    dropped: int
    lost: int
    last_seq: int
    first_seq: int
    """the oldest seq still held, or the next seq when empty"""
    stored_through: int


def _code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_full(exc: sqlite3.Error) -> bool:
    return _code(exc) == sqlite3.SQLITE_FULL or "full" in str(exc).lower()


def _is_corrupt(exc: sqlite3.Error) -> bool:
    return _code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class Outbox:
    """A bounded, durable FIFO of MQTT messages, keyed by the per-unit sequence number.

    One connection shared by the pipeline, health and drain threads behind a lock: the write
    rate is a handful of rows per second, far below what serialising costs.
    """

    def __init__(
        self,
        path: Path | str,
        max_bytes: int,
        *,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
        ledger_s: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self.ledger_s = ledger_s
        self.reserve_path = self.path.with_name(self.path.name + ".reserve")
        self._clock = clock
        self._lock = threading.Lock()
        #: where a damaged outbox was moved at this start, for the operator (None: it was fine)
        self.aside: Path | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._mark = SeqMark(self.path.with_name(self.path.name + ".seq"))
        except OSError as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        try:
            repair = check_and_repair(self.path, self._mark.mark, self._connect, self._clock())
            self.aside = repair.aside
            self._db = self._connect(self.path)
            self._page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(acked IS NULL), 0) FROM messages"
            ).fetchone()
            db_seq = self._meta("next_seq") - 1
            db_dropped, db_stored = self._meta("dropped"), self._meta("stored")
            newest = self._db.execute("SELECT MAX(at) FROM emitted").fetchone()[0]
        except (OSError, sqlite3.Error) as exc:
            self._mark.close()
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        self._depth, self._bytes, self._pending = int(row[0]), int(row[1]), int(row[2])
        self._ledger_newest = float(newest) if newest is not None else float("-inf")
        m = self._mark.mark
        # A seq taken but neither committed nor counted: the unit died while writing it.
        died_writing = max(0, m.seq - max(db_seq, m.settled))
        if died_writing:
            log.warning("outbox: %d message(s) (up to seq %d) were being written when the unit stopped; "
                        "counted as lost", died_writing, m.seq)
        hwm = max(m.seq, db_seq)
        self._stored = max(m.stored, db_stored)
        self._dropped_base = max(0, m.dropped - db_dropped)  # drops a replaced database no longer counts
        # What is known now; the mark is written from it before each row (so it lags by one outcome,
        # which the start-up arithmetic above accounts for).
        self._seq, self._db_seq, self._lost = hwm, max(db_seq, m.db_seq), m.lost + repair.lost + died_writing
        try:
            self._write_mark(hwm)
        except SeqMarkError as exc:
            self._db.close()
            self._mark.close()
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from None
        self._reserve_released = False
        self._ensure_reserve()
        if self._reserve_released:
            log.warning("outbox: the filesystem under %s has too little free space for the %d-byte reserve "
                        "and the same again kept free; set aside once space allows", self.path.parent,
                        self.reserve_bytes)
        self._unlogged_drops = 0
        self._drops_logged_at = float("-inf")
        log.info("outbox %s: %d message(s) held (%d not yet sent), %d bytes, next seq %d",
                 self.path, self._depth, self._pending, self._bytes, hwm + 1)

    @classmethod
    def from_config(cls, cfg: OutboxConfig) -> Outbox:
        return cls(cfg.path, cfg.max_bytes, reserve_bytes=cfg.reserve_bytes, ledger_s=cfg.ledger_s)

    # -- opening --------------------------------------------------------------------------------

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
            # Only possible before the first table: lets a drained outbox give pages back.
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        page = int(db.execute("PRAGMA page_size").fetchone()[0])
        # A small WAL: checkpointed often, truncated back after, so it never eats a small disk.
        wal_pages = self._wal_pages = max(16, min(1000, self.reserve_bytes // page // 4))
        db.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
        db.execute(f"PRAGMA journal_size_limit={2 * wal_pages * page}")
        db.executescript(_TABLES)
        columns = {r[1] for r in db.execute("PRAGMA table_info(messages)")}
        for column, kind in (("acked", "REAL"), ("key", "TEXT")):
            if column not in columns:  # an outbox written by an older version
                db.execute(f"ALTER TABLE messages ADD COLUMN {column} {kind}")
        db.executescript(_INDEXES)
        return db

    # -- small helpers ----------------------------------------------------------------------------

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:  # a failed rollback leaves SQLite to roll back on next use
            log.debug("outbox rollback failed: %s", exc)

    def _txn(self, op: Callable[[], T]) -> T:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = op()
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return result

    def _error(self, exc: sqlite3.Error, what: str, seq: int | None = None) -> OutboxError:
        text = f"outbox {what} failed: {exc}"
        if _is_corrupt(exc):
            return OutboxCorrupt(text, seq)
        if _is_full(exc):
            return OutboxFull(text, seq)
        return OutboxError(text, seq)

    def _write(self, op: Callable[[], T], what: str, seq: int | None = None) -> T:
        """Run `op` in a write transaction. On a full disk give back the reserve, checkpoint, and
        try once more; every failure leaves as an `OutboxError`."""
        try:
            return self._txn(op)
        except sqlite3.Error as exc:
            if not _is_full(exc):
                raise self._error(exc, what, seq) from None
            log.debug("outbox %s: disk full (%s); releasing the reserve", what, exc)
        self._release_reserve()
        self._checkpoint()
        try:
            return self._txn(op)
        except sqlite3.Error as exc:
            raise self._error(exc, what, seq) from None

    def _checkpoint(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.debug("outbox checkpoint failed: %s", exc)

    def _fs_free(self) -> int:
        st = os.statvfs(self.path.parent)
        return int(st.f_bavail) * int(st.f_frsize)

    def _reserve_size(self) -> int:
        try:
            return self.reserve_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _ensure_reserve(self) -> None:
        """(Re)create the reserve file once the filesystem can spare it above the free floor."""
        missing = self.reserve_bytes - self._reserve_size()
        if missing <= 0:
            self._reserve_released = False
            return
        try:
            if self._fs_free() - missing < self.reserve_bytes:
                self._reserve_released = True
                return
            fd = os.open(self.reserve_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("outbox reserve %s not (re)created: %s", self.reserve_path, exc)
            self._reserve_released = True
            return
        if self._reserve_released:
            log.info("outbox: disk space is back; reserve %s restored", self.reserve_path)
        self._reserve_released = False

    def _release_reserve(self) -> None:
        if self._reserve_size() == 0:
            return
        try:
            os.truncate(self.reserve_path, 0)
        except OSError as exc:
            log.debug("outbox reserve %s not released: %s", self.reserve_path, exc)
            return
        self._reserve_released = True
        log.warning("outbox: the disk under %s is full; released the %d-byte reserve so the outbox can "
                    "still make room (restored when space returns)", self.path.parent, self.reserve_bytes)

    def _space_shortfall(self, size: int) -> int:
        """Bytes to free inside the database before `size` more goes in. The database may grow
        while the filesystem keeps the floor (`reserve_bytes`) free, plus room for the WAL up to
        its next checkpoint; below that, the row must fit in pages the database already has, so a
        disk filled by ourselves or by others is met by recycling our own oldest rows. (Freed rows
        leave their pages to the database, not to the filesystem.)"""
        need = size + 4 * self._page  # the row and its index pages
        if self._fs_free() - self.reserve_bytes - self._wal_pages * self._page >= need:
            return 0
        free_pages = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return need - free_pages * self._page

    # -- writing ----------------------------------------------------------------------------------

    def enqueue(
        self, topic: str, build: Callable[[int], bytes], *, ledger: LedgerEntry | None = None
    ) -> int:
        """Take the next sequence number, build the payload with it, and commit it to disk.

        The payload is built with its number because the seq travels inside it. The number is
        taken in the seq mark (fsynced) before the row is committed, so it is never reused; a row
        the disk refuses keeps its number as a counted loss, which the server sees as a gap. With
        a `ledger` entry, rows still held for the same key are rebuilt with the new payload too, so
        whichever copy the server gets last says the same thing.
        """
        with self._lock:
            seq = self._seq + 1
            payload = build(seq)  # a payload the contract rejects raises here, before taking a number
            try:
                self._write_mark(seq)
            except (SeqMarkError, sqlite3.Error) as exc:
                self._lost += 1  # no number taken: counted here, invisible to the server
                raise OutboxError(f"outbox write failed: {exc}") from None
            self._seq = seq
            if self._reserve_released:
                self._ensure_reserve()
            try:
                n, freed, unsent, added = self._write(
                    lambda: self._insert(seq, topic, payload, build, ledger), "write", seq
                )
            except OutboxError:
                self._lost += 1  # persisted with the next mark; a restart before that counts it too
                raise
            # counters move only after the commit: a rolled-back attempt leaves them alone
            self._db_seq = seq
            self._depth += 1 - n
            self._bytes += added - freed
            self._pending += 1 - unsent
            if ledger is not None:
                self._ledger_newest = max(self._ledger_newest, ledger.at)
        if n:
            self._log_drops(n)
        return seq

    def _write_mark(self, seq: int) -> None:
        """Persist the mark for taking `seq`: every earlier seq is settled by then (committed, or
        counted in `lost`). One fsync per message besides the row's own commit."""
        self._mark.write(Mark(seq=seq, db_seq=self._db_seq, settled=self._seq, lost=self._lost,
                              dropped=self._dropped_base + self._meta("dropped"), stored=self._stored))

    def _insert(
        self, seq: int, topic: str, payload: bytes, build: Callable[[int], bytes], ledger: LedgerEntry | None
    ) -> tuple[int, int, int, int]:
        """One enqueue's statements; returns (rows dropped, bytes dropped, unsent rows dropped, bytes added)."""
        db = self._db
        size = len(payload) + len(topic) + ROW_OVERHEAD_BYTES
        excess = self._bytes + size - self.max_bytes
        shortfall = self._space_shortfall(size + (len(ledger.value) + len(ledger.key) if ledger else 0))
        if shortfall > 0:
            excess = max(excess, shortfall, int(self._bytes * DROP_FRACTION))
            # The ledger yields too, oldest first and a few entries at a time (one big delete would
            # need a big WAL): under space pressure it shrinks towards the newest windows only,
            # which is what a restart inside a window needs.
            db.execute("DELETE FROM emitted WHERE key IN (SELECT key FROM emitted WHERE at < "
                       "(SELECT MAX(at) FROM emitted) ORDER BY at LIMIT ?)", (LEDGER_YIELD_ROWS,))
        dropped = self._drop_oldest(excess) if excess > 0 else (0, 0, 0)
        grown = 0
        if ledger is not None:
            for old_seq, old_size in db.execute(
                "SELECT seq, size FROM messages WHERE key = ?", (ledger.key,)
            ).fetchall():
                old_payload = build(int(old_seq))
                new_size = len(old_payload) + len(topic) + ROW_OVERHEAD_BYTES
                db.execute("UPDATE messages SET payload = ?, size = ? WHERE seq = ?", (old_payload, new_size, old_seq))
                grown += new_size - int(old_size)
            db.execute("INSERT OR REPLACE INTO emitted (key, at, value) VALUES (?, ?, ?)",
                       (ledger.key, ledger.at, ledger.value))
            newest = max(self._ledger_newest, ledger.at)
            db.execute("DELETE FROM emitted WHERE at < ?", (newest - self.ledger_s,))
        db.execute(
            "INSERT INTO messages (seq, topic, payload, created, size, key) VALUES (?, ?, ?, ?, ?, ?)",
            (seq, topic, payload, self._clock(), size, ledger.key if ledger else None),
        )
        db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
        return (*dropped, size + grown)

    def _drop_oldest(self, excess: int) -> tuple[int, int, int]:
        """Delete the oldest rows until `excess` bytes are freed; inside the caller's transaction.
        Returns (rows, bytes, rows not yet sent)."""
        n = freed = last = unsent = 0
        for seq, row_size, acked in self._db.execute("SELECT seq, size, acked FROM messages ORDER BY seq"):
            if freed >= excess:
                break
            n, freed, last, unsent = n + 1, freed + int(row_size), int(seq), unsent + (acked is None)
        if n:
            self._db.execute("DELETE FROM messages WHERE seq <= ?", (last,))
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (n,))
        return (n, freed, unsent)

    def _log_drops(self, n: int) -> None:
        """One line a minute at most: a full outbox during a day-long outage drops on every enqueue."""
        self._unlogged_drops += n
        now = time.monotonic()
        if now - self._drops_logged_at >= DROP_LOG_INTERVAL_S:
            log.warning(
                "outbox full (%d bytes bound, %d bytes kept free on disk): dropped %d oldest message(s) "
                "since the last report", self.max_bytes, self.reserve_bytes, self._unlogged_drops,
            )
            self._unlogged_drops = 0
            self._drops_logged_at = now

    def emitted(self, key: str) -> bytes | None:
        """What was last emitted under `key` (within `ledger_s`), or None."""
        with self._lock:
            try:
                row = self._db.execute("SELECT value FROM emitted WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from None
        return None if row is None else bytes(row[0])

    def mark_acked(self, seqs: Iterable[int], at: float) -> int:
        """The broker acknowledged these: keep them, but stop sending them (until `resend_after_s`)."""
        seqs = list(seqs)
        if not seqs:
            return 0
        with self._lock:
            def op() -> int:
                n = 0
                for s in seqs:
                    cur = self._db.execute("UPDATE messages SET acked = ? WHERE seq = ? AND acked IS NULL", (at, s))
                    n += cur.rowcount
                    if cur.rowcount == 0:  # a re-send acknowledged again
                        self._db.execute("UPDATE messages SET acked = ? WHERE seq = ?", (at, s))
                return n

            n = self._write(op, "ack")
            self._pending -= n
            return n

    def stored(self, through_seq: int) -> int:
        """The server holds every seq <= `through_seq`: forget those rows. Returns how many."""
        with self._lock:
            if through_seq > self._seq:
                raise OutboxError(
                    f"stored through seq {through_seq} is beyond the last seq this unit sent "
                    f"({self._seq}): not about this outbox's numbering"
                )

            def op() -> tuple[int, int, int]:
                n, size, unsent = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(acked IS NULL), 0) "
                    "FROM messages WHERE seq <= ?", (through_seq,)
                ).fetchone()
                if n:
                    self._db.execute("DELETE FROM messages WHERE seq <= ?", (through_seq,))
                if through_seq > self._meta("stored"):
                    self._db.execute("UPDATE meta SET value = ? WHERE key = 'stored'", (through_seq,))
                return int(n), int(size), int(unsent)

            n, size, unsent = self._write(op, "delete")
            self._depth -= n
            self._bytes -= size
            self._pending -= unsent
            self._stored = max(self._stored, through_seq)
            if n:
                self._give_back_space()
            return n

    def _give_back_space(self) -> None:
        """After a backlog is confirmed, hand free pages back to the filesystem, keeping some for
        the next rows; and take the reserve back if it was given away."""
        try:
            free_pages = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
            keep = 2 * self.reserve_bytes // self._page
            if free_pages > keep:
                self._db.execute(f"PRAGMA incremental_vacuum({free_pages - keep})")
        except sqlite3.Error as exc:
            log.debug("outbox incremental vacuum failed: %s", exc)
            self._rollback()
        if self._reserve_released:
            self._ensure_reserve()

    # -- reading ----------------------------------------------------------------------------------

    def _read(self, sql: str, args: tuple[float | int, ...]) -> list[OutboxRow]:
        with self._lock:
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from None
        return [OutboxRow(int(s), str(t), bytes(p), float(c), None if a is None else float(a))
                for s, t, p, c, a in rows]

    def peek_after(self, seq: int, limit: int) -> list[OutboxRow]:
        """The next `limit` rows after `seq` not yet acknowledged by the broker, oldest first."""
        return self._read(
            "SELECT seq, topic, payload, created, acked FROM messages "
            "WHERE seq > ? AND acked IS NULL ORDER BY seq LIMIT ?", (seq, limit),
        )

    def due_for_resend(self, after_seq: int, acked_before: float, limit: int) -> list[OutboxRow]:
        """Rows after `after_seq` that the broker acknowledged at or before `acked_before` and the
        server has still not confirmed, oldest first."""
        return self._read(
            "SELECT seq, topic, payload, created, acked FROM messages "
            "WHERE seq > ? AND acked IS NOT NULL AND acked <= ? ORDER BY seq LIMIT ?",
            (after_seq, acked_before, limit),
        )

    def stats(self) -> OutboxStats:
        with self._lock:
            try:
                # The oldest row by seq, not MIN(created): O(1) on the rowid instead of a full scan.
                row = self._db.execute("SELECT seq, created FROM messages ORDER BY seq LIMIT 1").fetchone()
                dropped = self._meta("dropped")
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from None
            return OutboxStats(
                depth=self._depth,
                pending=self._pending,
                bytes=self._bytes,
                oldest_created=None if row is None else float(row[1]),
                dropped=self._dropped_base + dropped,
                lost=self._lost,
                last_seq=self._seq,
                first_seq=self._seq + 1 if row is None else int(row[0]),
                stored_through=self._stored,
            )

    def __len__(self) -> int:
        return self._depth

    @property
    def pending(self) -> int:
        """Rows not yet acknowledged by the broker: what a flush waits for."""
        return self._pending

    @property
    def last_seq(self) -> int:
        """The last sequence number taken (0 before the first message ever)."""
        return self._seq

    @property
    def lost(self) -> int:
        """Messages lost to storage trouble, over the unit's life (health `outbox_lost`)."""
        return self._lost

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._write_mark(self._seq)  # every outcome settled, for the next start
            except (sqlite3.Error, SeqMarkError) as exc:
                log.debug("outbox checkpoint on close failed: %s", exc)
            self._db.close()
            self._mark.close()
