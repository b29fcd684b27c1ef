"""Two records with one key: a window (unit, lane, window start) written twice with different seqs.

Re-delivery sends the same record again (same seq): harmless, and not a clash. A different seq
for a key already written means the unit produced the window twice: it restarted inside the
window, or its clock stepped back. The second record replaces the first (server.schema writes
every count of a key), and the clash is counted per unit in the server health, so a restart or a
clock step shows instead of quietly rewriting history.

Memory is bounded: the last `per_lane` windows of each lane (an hour of 10 s windows by default).
A clash with an older window, or with one written before the server restarted, is replaced the
same way but not counted.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime

from wire.payloads import CountsMessage

log = logging.getLogger(__name__)


class KeyClashes:
    def __init__(self, per_lane: int = 360) -> None:
        self.per_lane = per_lane
        self._seen: dict[tuple[str, str, str], OrderedDict[datetime, int]] = {}

    def clashes(self, m: CountsMessage) -> bool:
        """Note the record's key; True when the key was already written with another seq."""
        recent = self._seen.setdefault((m.gate, m.unit, m.lane), OrderedDict())
        before = recent.get(m.window_start)
        recent[m.window_start] = m.seq
        if len(recent) > self.per_lane:
            recent.popitem(last=False)
        if before is None or before == m.seq:
            return False
        log.warning("unit %s/%s wrote lane %s window %s twice (seq %d, then %d): the second replaces the first",
                    m.gate, m.unit, m.lane, m.window_start.isoformat(), before, m.seq)
        return True
