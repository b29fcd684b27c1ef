"""Per-unit sequence tracking: how far each unit's messages are stored, what was lost, when it reset.

The end-to-end acknowledgement (wire.StoredMessage): a unit deletes an outbox row only once the
server says, retained on `<gate>/<unit>/stored`, that every message of the unit up to
`through_seq` is durable. A broker's PUBACK proves nothing after the broker crashes, so this is
the only acknowledgement a unit may forget data on.

`through_seq` is the contiguous high-water mark of the seqs the server has made durable (in the
database or the fsynced spool) or dead-lettered: a rejected message counts as handled, since
sending it again would only be rejected again. Seqs above a hole wait in `pending`. A hole may be
a message still in flight, so the server waits, until the unit's health says otherwise:
`outbox_first_seq` is the oldest seq the unit still holds, and a seq below it that never arrived
is lost for good. The server counts it as a gap and moves past it.

A seq that goes backwards is a reset (a re-imaged unit, a lost state folder): a fresh `online`
status whose last seq is below `through_seq`, or a fresh health whose own seq is at or below it.
"Fresh" means stamped after every status and health seen from the unit (and after our own last
retained statement), so a re-delivered old copy is never taken for a reset. On a reset the
tracker counts the seqs it had seen announced but never stored as gaps, and starts again at 0:
claiming the old `through_seq` for the new numbering would tell the unit to delete rows never
stored. The new life's first messages may have come before the one that showed the reset, and
been taken for re-deliveries; those stamped after the newest message of the old life are settled
again in the new numbering (a new life's clock running behind only delays them: the unit sends
them again). (The unit must itself ignore a retained `through_seq` above its own last seq:
that one speaks of its previous life.)

A unit is tracked from its first health with `outbox_first_seq` (everything older is gone from
the unit, so nothing is owed) or from our own retained statement read back on restart, whichever
comes first. Before that nothing is published for it: a guess could delete rows still in flight.

Only the processing thread calls this, after the batch holding the messages is durable.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from server.validation import stamp
from wire.payloads import (
    CountsMessage,
    EventMessage,
    HealthMessage,
    StatusMessage,
    StoredMessage,
    UnitState,
)

log = logging.getLogger(__name__)

UnitKey = tuple[str, str]
#: repeats remembered per unit, to be settled again if they turn out to be a new life's
REPEATS = 1000


class SeqHealth(BaseModel):
    """One unit's line in the server health: the acknowledgement and what it cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    through_seq: int | None = Field(description="every seq up to this one is stored (None: not tracked yet)")
    pending: int = Field(description="stored seqs above a hole, waiting for it")
    gaps: int = Field(description="seqs given up on: below the unit's oldest outbox seq, never received")
    resets: int = Field(description="times the unit's seq went backwards")


@dataclass
class _Unit:
    name: str
    through: int | None = None
    pending: set[int] = field(default_factory=set)
    gaps: int = 0
    resets: int = 0
    #: newest unit stamp of a health or online status (or our own restored statement)
    last_at: datetime | None = None
    restored: bool = False
    dirty: bool = False
    next_publish: float = 0.0
    #: (seq, stamp) of recent messages at or below the mark: re-deliveries, or a new life's first words
    repeats: deque[tuple[int, datetime]] = field(default_factory=lambda: deque(maxlen=REPEATS))
    #: the newest stamp of a message settled in this life
    newest: datetime | None = None


class StoredTracker:
    def __init__(self, *, min_interval_s: float = 1.0, max_pending: int = 100_000) -> None:
        self.min_interval_s = min_interval_s
        self.max_pending = max_pending
        self._units: dict[UnitKey, _Unit] = {}

    # -- input, in arrival order, once durable -------------------------------------------------

    def on_durable(self, message: CountsMessage | EventMessage | HealthMessage | StatusMessage) -> None:
        """A message whose batch is now in the database or the spool (or that was dead-lettered)."""
        u = self._unit(message.gate, message.unit)
        if isinstance(message, StatusMessage):
            # status carries the unit's last seq instead of taking one; only a live `online` speaks
            # for the unit now (a Last Will carries the seq of its connect, long past)
            if message.state == UnitState.ONLINE and self._fresh(u, message.at) and u.through is not None \
                    and message.seq < u.through:
                self._reset(u)
            return
        if isinstance(message, HealthMessage):
            if self._fresh(u, message.at) and u.through is not None and message.seq <= u.through:
                self._reset(u)
            self._settle(u, message.seq, message.at)
            if message.outbox_first_seq is not None:
                self._oldest_held(u, message.outbox_first_seq)
            return
        self._settle(u, message.seq, stamp(message))

    def restore(self, message: StoredMessage) -> bool:
        """Our own retained statement, read back on (re)subscribe: the memory of a previous run. The
        first one adds its counters to ours; later copies (after a reconnect) only raise through_seq."""
        u = self._unit(message.gate, message.unit)
        if u.restored and u.through is not None and message.through_seq <= u.through:
            return False
        if not u.restored:
            u.gaps += message.gaps
            u.resets += message.resets
            u.restored = True
        u.through = message.through_seq if u.through is None else max(u.through, message.through_seq)
        u.last_at = message.at if u.last_at is None else max(u.last_at, message.at)
        self._absorb(u)
        return True

    # -- output --------------------------------------------------------------------------------

    def due(self, now: float) -> list[tuple[UnitKey, int, int, int]]:
        """(unit, through_seq, gaps, resets) to publish now: changed, and not said within min_interval_s."""
        out = []
        for key, u in self._units.items():
            if u.dirty and u.through is not None and now >= u.next_publish:
                u.dirty = False
                u.next_publish = now + self.min_interval_s
                out.append((key, u.through, u.gaps, u.resets))
        return out

    def health(self) -> dict[str, SeqHealth]:
        return {f"{g}/{n}": SeqHealth(through_seq=u.through, pending=len(u.pending), gaps=u.gaps, resets=u.resets)
                for (g, n), u in sorted(self._units.items())}

    def totals(self) -> tuple[int, int]:
        """(gaps, resets) over every unit."""
        return sum(u.gaps for u in self._units.values()), sum(u.resets for u in self._units.values())

    # -- the bookkeeping -----------------------------------------------------------------------

    def _unit(self, gate: str, unit: str) -> _Unit:
        key = (gate, unit)
        if key not in self._units:
            self._units[key] = _Unit(f"{gate}/{unit}")
        return self._units[key]

    @staticmethod
    def _fresh(u: _Unit, at: datetime) -> bool:
        fresh = u.last_at is None or at > u.last_at
        if fresh:
            u.last_at = at
        return fresh

    def _settle(self, u: _Unit, seq: int, at: datetime) -> None:
        if u.through is not None and seq <= u.through:
            u.repeats.append((seq, at))  # a re-delivery, already counted (or a new life's, see _reset)
            return
        u.newest = at if u.newest is None else max(u.newest, at)
        if u.through is not None and seq == u.through + 1:
            u.through = seq
            u.dirty = True
            self._absorb(u)
            return
        u.pending.add(seq)
        if len(u.pending) > self.max_pending:
            self._overflow(u)

    def _oldest_held(self, u: _Unit, first: int) -> None:
        """The unit holds nothing below `first`: what never arrived below it is lost."""
        if u.through is None:
            u.through = first - 1  # tracking starts here: nothing older is owed
            u.pending = {s for s in u.pending if s > u.through}
        elif first - 1 > u.through:
            arrived = {s for s in u.pending if s < first}
            lost = first - 1 - u.through - len(arrived)
            if lost:
                log.warning("unit %s no longer holds seqs %d..%d: %d never arrived, lost for good (a gap)",
                            u.name, u.through + 1, first - 1, lost)
            u.gaps += lost
            u.pending -= arrived
            u.through = first - 1
        else:
            return
        u.dirty = True
        self._absorb(u)

    def _reset(self, u: _Unit) -> None:
        lost = 0
        if u.pending and u.through is not None:
            lost = max(u.pending) - u.through - len(u.pending)  # announced, never stored
            u.gaps += lost
        log.warning("unit %s started its seqs again below %s (re-imaged, or its state lost): a reset; %d seqs of "
                    "its previous life never arrived", u.name, u.through, lost)
        u.resets += 1
        u.through = 0  # a unit's seqs start at 1
        u.pending = set()
        u.dirty = True
        u.next_publish = 0.0  # say it at once: the unit holds a through_seq of its previous life
        new_life = [(seq, at) for seq, at in u.repeats if u.newest is None or at > u.newest]
        u.repeats.clear()
        u.newest = None
        for seq, at in new_life:
            self._settle(u, seq, at)

    def _absorb(self, u: _Unit) -> None:
        if u.through is None:
            return
        while u.through + 1 in u.pending:
            u.through += 1
            u.pending.discard(u.through)
            u.dirty = True
        if u.pending and min(u.pending) <= u.through:
            u.pending = {s for s in u.pending if s > u.through}

    def _overflow(self, u: _Unit) -> None:
        """A hole nobody explains (no health, or a unit too old to say its oldest seq) while stored
        seqs pile up above it: give up on the oldest hole, counted, rather than grow without bound."""
        if u.through is None:
            keep = sorted(u.pending)[len(u.pending) // 2:]
            u.pending = set(keep)
            return
        lowest = min(u.pending)
        log.warning("unit %s: seqs %d..%d never arrived and %d more wait above them; given up as a gap",
                    u.name, u.through + 1, lowest - 1, len(u.pending))
        u.gaps += lowest - u.through - 1
        u.through = lowest - 1
        u.dirty = True
        self._absorb(u)
