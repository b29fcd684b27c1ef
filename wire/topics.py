"""MQTT topic names, versioned and scoped by gate and unit.

Topics carry identity (gate, unit, lane) so the broker's per-unit ACLs can be written as
plain patterns (`gatewatch/v1/<gate>/<unit>/#`) and the server can check that a payload's
claimed identity matches where it was published.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from wire.errors import WireError

PREFIX = "gatewatch/v1"
DEAD_LETTER = f"{PREFIX}/_deadletter"
SERVER_HEALTH = f"{PREFIX}/_server/health"
ALL_UNITS = f"{PREFIX}/+/+/+"

#: ids that appear in topics and InfluxDB tags: short, lowercase, no MQTT wildcards or separators.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
_ID_RE = re.compile(ID_PATTERN)


class TopicKind(StrEnum):
    COUNTS = "counts"
    EVENTS = "events"
    STATUS = "status"
    HEALTH = "health"
    ALERT = "alert"
    STORED = "stored"


#: what a unit publishes; `alert` is published by the server under <gate>/<lane>/alert, and
#: `stored` by the server under <gate>/<unit>/stored (a unit only ever reads its own).
UNIT_KINDS = frozenset({TopicKind.COUNTS, TopicKind.EVENTS, TopicKind.STATUS, TopicKind.HEALTH})
#: what the server publishes itself, under a lane (`alert`) or a unit (`stored`) scope.
SERVER_KINDS = frozenset({TopicKind.ALERT, TopicKind.STORED})


def is_own_output(topic: str) -> bool:
    """Topics the server publishes itself; a wide subscription (`gatewatch/v1/#`) sees them too."""
    if topic.startswith((DEAD_LETTER, SERVER_HEALTH, f"{PREFIX}/_")):
        return True
    parts = topic.split("/")
    return len(parts) == 5 and parts[4] in SERVER_KINDS


def server_claim(client_id: str) -> str:
    """Where the server holding an MQTT client id says so, retained, so that a second server started
    with the same id finds it and stands down (`/`, `+` and `#` cannot be in a topic level)."""
    return f"{PREFIX}/_server/session/{re.sub(r'[/+#]', '_', client_id)}"


def check_id(value: str, what: str = "id") -> str:
    if not _ID_RE.match(value):
        raise WireError("bad_id", f"{what} {value!r} must match {ID_PATTERN}")
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: `gatewatch/v1/<gate>/<scope>/<kind>`, scope being a unit or, for alerts, a lane."""

    gate: str
    scope: str
    kind: TopicKind

    def __str__(self) -> str:
        return f"{PREFIX}/{self.gate}/{self.scope}/{self.kind.value}"

    @classmethod
    def unit(cls, gate: str, unit: str, kind: TopicKind) -> Topic:
        if kind not in UNIT_KINDS:
            raise WireError("bad_topic", f"{kind} is not a unit topic")
        return cls(check_id(gate, "gate"), check_id(unit, "unit"), kind)

    @classmethod
    def alert(cls, gate: str, lane: str) -> Topic:
        return cls(check_id(gate, "gate"), check_id(lane, "lane"), TopicKind.ALERT)

    @classmethod
    def stored(cls, gate: str, unit: str) -> Topic:
        """Where the server tells one unit, retained, how far its messages are durable."""
        return cls(check_id(gate, "gate"), check_id(unit, "unit"), TopicKind.STORED)

    @classmethod
    def parse(cls, topic: str) -> Topic:
        return _parse(topic)


@functools.lru_cache(maxsize=4096)
def _parse(topic: str) -> Topic:
    """Every message's topic is parsed, and a gate has few: the result is kept (a bad topic is not, it raises)."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != PREFIX:
        raise WireError("bad_topic", f"{topic!r} is not {PREFIX}/<gate>/<unit>/<kind>")
    try:
        kind = TopicKind(parts[4])
    except ValueError:
        raise WireError("bad_topic", f"unknown topic kind {parts[4]!r}") from None
    return Topic(check_id(parts[2], "gate"), check_id(parts[3], "unit or lane"), kind)
