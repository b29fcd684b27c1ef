"""The outbox's start-up check: is the database still what the seq mark says it wrote?

Why at every start: the ways an outbox goes bad on a Pi all happen while the unit is down or
dying (a power cut tears the WAL, an SD card returns garbage, somebody deletes or truncates the
file), and SQLite opens most of them without complaint: a truncated file or a lost WAL looks like
an empty or older outbox, and numbering would restart or repeat. The seq mark (written before
every commit) says how far the database must reach; `inspect` compares, and also runs
`quick_check`.

What happens to a damaged outbox: it is moved aside with its WAL and shared-memory files
(`<name>.damaged-<UTC time>`), untouched, for a human; a fresh database takes its place; every row
that can still be read and that the server has not confirmed is carried over; the rest is counted
as lost. Numbering continues after the mark, so the server sees the loss as a gap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.service.seq_mark import Mark, fsync_dir

log = logging.getLogger(__name__)

#: rows read per statement when carrying a damaged outbox's rows over
SALVAGE_CHUNK = 500

Connect = Callable[[Path], sqlite3.Connection]


@dataclass(frozen=True, slots=True)
class Repair:
    """What the start-up check did: messages counted as lost, and where a damaged file went."""

    lost: int = 0
    aside: Path | None = None


def check_and_repair(path: Path, mark: Mark, connect: Connect, now: float) -> Repair:
    """Check the outbox at `path` against `mark`; move a damaged one aside and carry over its
    readable rows into a fresh database made by `connect`."""
    if not path.exists():
        if mark.db_seq > mark.stored:
            lost = mark.db_seq - mark.stored
            log.error("outbox %s is missing, but the seq mark says it held up to seq %d; up to %d "
                      "unconfirmed message(s) lost (seq %d..%d); numbering continues at seq %d",
                      path, mark.db_seq, lost, mark.stored + 1, mark.db_seq, mark.seq + 1)
            return Repair(lost)
        return Repair()
    reason = inspect(path, mark)
    if reason is None:
        return Repair()
    return _repair(path, mark, connect, now, reason)


def inspect(path: Path, mark: Mark) -> str | None:
    """Why the database at `path` cannot be trusted, or None. Read-only: a damaged file is kept
    exactly as it was found."""
    if path.stat().st_size == 0:
        return "the file is empty" if mark.db_seq > 0 else None
    try:
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    try:
        check = ro.execute("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            return f"quick_check: {check}"
        tables = {r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"messages", "meta"} <= tables:
            return "it holds no outbox tables" if mark.db_seq > 0 or tables else None
        row = ro.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        held = int(row[0]) - 1 if row is not None else 0
        if held < mark.db_seq:
            return (f"it lost committed messages: it holds up to seq {held}, the seq mark says seq "
                    f"{mark.db_seq} was committed (a deleted or cut WAL?)")
    except sqlite3.Error as exc:
        return f"unreadable: {exc}"
    finally:
        ro.close()
    return None


def _repair(path: Path, mark: Mark, connect: Connect, now: float, reason: str) -> Repair:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    fresh = path.with_name(f"{path.name}.recovering")
    for leftover in _family(fresh):
        leftover.unlink(missing_ok=True)
    new = connect(fresh)
    try:
        # SQLite deletes the WAL of a zero-byte database on open: leave that one untouched for the human
        empty = path.stat().st_size == 0
        salvaged, old_meta = (0, {}) if empty else _salvage(path, new, mark.stored, mark.seq)
        stored = max(mark.stored, old_meta.get("stored", 0))
        held = max(mark.db_seq, old_meta.get("next_seq", 1) - 1)
        hwm = max(mark.seq, held)
        new.execute("BEGIN IMMEDIATE")
        new.executemany("UPDATE meta SET value = ? WHERE key = ?", [
            (hwm + 1, "next_seq"), (max(mark.dropped, old_meta.get("dropped", 0)), "dropped"), (stored, "stored"),
        ])
        new.execute("COMMIT")
        new.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        new.close()
    for src, dst in zip(_family(path), _family(aside), strict=True):
        if src.exists():
            os.replace(src, dst)
    os.replace(fresh, path)
    for leftover in _family(fresh):
        leftover.unlink(missing_ok=True)
    fsync_dir(path.parent)
    # Every seq the database should have held beyond what the server confirmed, less what was read
    # back: an upper bound (what was stored in the last moments before the damage counts too).
    # A seq taken after that, neither committed nor counted, was being written when the unit died.
    lost = max(0, held - stored - salvaged) + max(0, mark.seq - max(held, mark.settled))
    log.error(
        "outbox %s is damaged (%s); moved aside to %s and kept for inspection; %d unconfirmed "
        "message(s) carried over, up to %d lost (seq %d..%d); numbering continues at seq %d",
        path, reason, aside, salvaged, lost, stored + 1, held, hwm + 1,
    )
    return Repair(lost, aside)


def _salvage(path: Path, new: sqlite3.Connection, stored: int, upper: int) -> tuple[int, dict[str, int]]:
    """Copy what can still be read from a damaged outbox: its unconfirmed rows (those after
    `stored`, up to `upper` or its own last seq), its window ledger and its counters. Rows are
    read in chunks; past an unreadable page, one by one, so one bad page costs only its rows."""
    copied = 0
    meta: dict[str, int] = {}
    try:
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0, meta
    try:
        with contextlib.suppress(sqlite3.Error, ValueError, TypeError):
            meta = {str(k): int(v) for k, v in ro.execute("SELECT key, value FROM meta")}
        columns: set[str] = set()
        with contextlib.suppress(sqlite3.Error):
            columns = {str(r[1]) for r in ro.execute("PRAGMA table_info(messages)")}
        # an outbox written before acks were kept has neither column
        acked = "acked" if "acked" in columns else "NULL"
        key = "key" if "key" in columns else "NULL"
        last = max(stored, meta.get("stored", 0))
        upper = max(upper, meta.get("next_seq", 1) - 1)
        select = f"SELECT seq, topic, payload, created, size, {acked}, {key} FROM messages "
        one_by_one = False
        while last < upper:
            try:
                if one_by_one:
                    last += 1
                    rows = ro.execute(select + "WHERE seq = ?", (last,)).fetchall()
                else:
                    rows = ro.execute(select + "WHERE seq > ? ORDER BY seq LIMIT ?", (last, SALVAGE_CHUNK)).fetchall()
                    if not rows:
                        break
                    last = int(rows[-1][0])
            except sqlite3.Error:
                one_by_one = True
                continue
            if rows:
                new.execute("BEGIN IMMEDIATE")
                new.executemany(
                    "INSERT OR IGNORE INTO messages (seq, topic, payload, created, size, acked, key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", rows,
                )
                new.execute("COMMIT")
                copied += len(rows)
        try:
            ledger = ro.execute("SELECT key, at, value FROM emitted").fetchall()
        except sqlite3.Error:
            ledger = []
        if ledger:
            new.execute("BEGIN IMMEDIATE")
            new.executemany("INSERT OR REPLACE INTO emitted (key, at, value) VALUES (?, ?, ?)", ledger)
            new.execute("COMMIT")
    finally:
        ro.close()
    return copied, meta


def _family(path: Path) -> tuple[Path, Path, Path]:
    """A WAL database is three files: the database, its WAL and its shared-memory index."""
    return path, Path(f"{path}-wal"), Path(f"{path}-shm")
