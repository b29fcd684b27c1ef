"""The unit's seq high-water mark, kept in a small file beside the outbox database.

Why outside the database: an outbox can be lost or damaged (truncated, its WAL deleted or cut by
a power cut, a bad SD-card block). If numbering then restarted at 1, the unit would reuse seqs the
server has already seen, and the loss would hide behind them. So the last seq handed out, and the
counters that must outlive a damaged database (lost, dropped), live here, and the outbox checks
its database against this file at every start.

How it survives a power cut and a full disk: the file has two fixed-size slots, each with a
generation number and a CRC. A write goes to the older slot, in place, and is fsynced; a write
that a power cut tears leaves the other slot intact, and the reader takes the valid slot with the
newest generation. Writing in place never allocates blocks, so the mark keeps working when the
filesystem is full and the database cannot grow.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

#: one slot per 512-byte sector, so a torn sector write can only ever hit one of them.
SLOT_BYTES = 512
_MAGIC = "gatewatch-seq v1"
_FIELDS = ("gen", "seq", "db", "settled", "lost", "dropped", "stored")
_SLOT_RE = re.compile(
    rb"^" + _MAGIC.encode() + rb" " + rb" ".join(f"{f}=(\\d+)".encode() for f in _FIELDS) + rb" crc=([0-9a-f]{8})\n"
)


@dataclass(frozen=True, slots=True)
class Mark:
    """What the file records; every field only ever grows."""

    seq: int = 0
    """the last seq handed out: written *before* its row is committed, so it is never reused"""
    db_seq: int = 0
    """the last seq known to be committed to the outbox database: the database must hold at least
    this much at the next start, or it lost commits (a deleted or cut WAL)"""
    settled: int = 0
    """the last seq whose fate is recorded (committed, or counted in `lost`); a seq between this
    and `seq` at start-up was being written when the unit died"""
    lost: int = 0
    """messages lost to storage trouble (never counts what the disk bound dropped)"""
    dropped: int = 0
    """messages dropped at the disk bound, oldest first (a copy of the database's counter)"""
    stored: int = 0
    """the last `through_seq` the server confirmed, as of the last write"""


class SeqMarkError(OSError):
    """The mark file cannot be opened or written."""


class SeqMark:
    """The two-slot mark file; `mark` is the newest valid state (all zeros for a new file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            created = not path.exists()
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if created:
                fsync_dir(path.parent)
            raw = os.pread(self._fd, 2 * SLOT_BYTES, 0)
        except OSError as exc:
            raise SeqMarkError(exc.errno, f"seq mark {path}: {exc.strerror}") from None
        slots = [_parse(raw[i * SLOT_BYTES:(i + 1) * SLOT_BYTES]) for i in range(2)]
        valid = [s for s in slots if s is not None]
        #: False for a new file, or one with no readable slot (then `mark` is all zeros)
        self.found = bool(valid)
        if raw.strip(b"\0") and not valid:
            log.error("seq mark %s has no valid slot; starting from the outbox database's own numbering", path)
        gen, self.mark = max(valid, key=lambda s: s[0]) if valid else (0, Mark())
        self._gen = gen

    def write(self, mark: Mark) -> None:
        """Persist `mark` (in place, fsynced) before returning; raises SeqMarkError."""
        gen = self._gen + 1
        values = (gen, mark.seq, mark.db_seq, mark.settled, mark.lost, mark.dropped, mark.stored)
        body = f"{_MAGIC} " + " ".join(f"{f}={v}" for f, v in zip(_FIELDS, values, strict=True))
        line = f"{body} crc={zlib.crc32(body.encode()):08x}\n".encode()
        try:
            os.pwrite(self._fd, line.ljust(SLOT_BYTES, b"\0"), (gen % 2) * SLOT_BYTES)
            os.fdatasync(self._fd)
        except OSError as exc:
            raise SeqMarkError(exc.errno, f"seq mark {self.path}: {exc.strerror}") from None
        self._gen = gen
        self.mark = mark

    def update(self, **changes: int) -> None:
        self.write(replace(self.mark, **changes))

    def close(self) -> None:
        os.close(self._fd)


def _parse(slot: bytes) -> tuple[int, Mark] | None:
    m = _SLOT_RE.match(slot)
    if m is None:
        return None
    body = slot[: slot.index(b" crc=")]
    if f"{zlib.crc32(body):08x}".encode() != m.group(len(_FIELDS) + 1):
        return None
    gen, seq, db, settled, lost, dropped, stored = (int(m.group(i + 1)) for i in range(len(_FIELDS)))
    return gen, Mark(seq, db, settled, lost, dropped, stored)


def fsync_dir(path: Path) -> None:
    """A new file's name is durable only once its directory is fsynced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
