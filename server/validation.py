"""Everything a message must pass before it may touch the database or the alert state.

The wire contract (`wire.decode_message`) checks shape and identity; the checks here need the
server's own knowledge: which units exist, which lanes and directions each owns, what the
database can hold, and what time it is. A rejection is always a `WireError` with a stable reason
code, so the dead-letter topic and the health counters can group rejections without parsing
text, and no input, however odd, reaches the log as a traceback.

A rejection after the message was read, from a unit the server knows, is a `Rejected`: it
carries the message, because its seq still counts as handled (dead-lettered) for the unit's
end-to-end acknowledgement; re-sending it would only be rejected again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server.config import ValidationConfig
from server.ownership import Ownership
from wire.errors import WireError
from wire.payloads import (
    CountsMessage,
    EventMessage,
    HealthMessage,
    Message,
    StatusMessage,
    VehicleClass,
    decode_message,
)

Clock = Callable[[], datetime]

#: what InfluxDB stores an integer field in
INT64_MAX = 2**63 - 1
#: integers longer than this are not an overflow of some field but garbage (2**128 has 39 digits)
HUGE_DIGITS = 39
#: no message nests deeper than 3 (record -> counts -> class); anything past this is an attack
MAX_DEPTH = 16
#: objects and arrays a message may open (`{` and `[`, strings' included): a record has under ten,
#: and its few free-text fields could add at most 124; counted before parsing, so deep JSON costs nothing
MAX_CONTAINERS = 256
#: keys a message may have beyond its lane's counts: a record has about 40
KEYS_BESIDE_COUNTS = 64


def utc_now() -> datetime:
    return datetime.now(UTC)


UnitMessage = CountsMessage | EventMessage | StatusMessage | HealthMessage


class Rejected(WireError):
    """A readable message from a known unit that a server check refuses."""

    def __init__(self, reason: str, detail: str, message: UnitMessage) -> None:
        super().__init__(reason, detail)
        self.message = message


class Validator:
    """Turns (topic, payload) into a trusted unit message or a WireError with a reason."""

    def __init__(self, config: ValidationConfig, clock: Clock = utc_now, lanes_file: Path | None = None) -> None:
        self.config = config
        self._clock = clock
        self.ownership = Ownership(config, lanes_file)
        # made once: every message is checked against them
        self._max_future = timedelta(seconds=config.max_future_s)
        self._max_age = timedelta(seconds=config.max_age_s)
        self._tolerance = timedelta(seconds=config.clock_tolerance_s)
        self._known = {gate: config.known(gate) for gate in config.gates}
        #: 4 classes x the most directions a lane may have, and the rest of a record
        self._max_keys = len(VehicleClass) * (1 + config.max_directions_per_lane) + KEYS_BESIDE_COUNTS

    def check(self, topic: str, payload: bytes) -> UnitMessage:
        message = self._decode(topic, payload)
        if not isinstance(message, CountsMessage | EventMessage | StatusMessage | HealthMessage):
            # alerts and stored acknowledgements are ours to publish; one arriving here came from somebody else
            raise WireError("not_a_unit_message", f"{message.kind} messages are published by the server")
        self._check_known(message.gate, message.unit)
        try:
            self._check_time(message)
            if isinstance(message, CountsMessage):
                self._check_plausible(message)
                self.ownership.check(message.gate, message.unit, message.lane,
                                     [d for dirs in message.counts.values() for d in dirs])
            elif isinstance(message, EventMessage):
                e = message.event
                if e.track_id > INT64_MAX:
                    raise WireError("int64_overflow", f"event.track_id {e.track_id} > {INT64_MAX}")
                self.ownership.check(message.gate, message.unit, e.lane, [e.direction])
        except WireError as exc:
            raise Rejected(exc.reason, exc.detail, message) from None
        return message

    def directions(self, message: CountsMessage) -> tuple[str, ...]:
        """Every direction the record's lane owns."""
        return self.ownership.directions(message.gate, message.lane)

    def ahead(self, message: UnitMessage) -> bool:
        """Stamped further ahead of our clock than the tolerance: stored, but kept away from the alerts."""
        return stamp(message) > self._clock() + self._tolerance

    def _decode(self, topic: str, payload: bytes) -> Message:
        # two byte counts (C speed, before any parsing) turn away the costliest garbage cheaply
        if len(payload) > 1024 and len(payload) <= self.config.max_payload_bytes:
            containers = payload.count(b"{") + payload.count(b"[")
            if containers > MAX_CONTAINERS:
                raise WireError("too_deep", f"{containers} objects and arrays > {MAX_CONTAINERS}: nested deeper or "
                                            "wider than any message")
            keys = payload.count(b'":')
            if keys > self._max_keys:
                raise WireError("too_many_fields", f"{keys} keys > {self._max_keys}: more than a record of a lane "
                                                   f"with {self.config.max_directions_per_lane} directions can hold")
        try:
            return decode_message(topic, payload, max_bytes=self.config.max_payload_bytes)
        except WireError as exc:
            if exc.reason in ("invalid", "bad_json"):
                raise _number_or_depth_problem(payload) or exc from None
            raise
        except RecursionError:
            raise WireError("too_deep", f"JSON nested deeper than the parser's recursion limit (> {MAX_DEPTH})") \
                from None
        except ValueError as exc:  # json's own limit on integer digits (a plain ValueError, not a JSON error)
            raise _number_or_depth_problem(payload) or WireError("bad_json", str(exc)[:200]) from None

    def _check_known(self, gate: str, unit: str) -> None:
        if self.config.accept_unknown:
            return
        units = self._known.get(gate)
        if units is None:
            raise WireError("unknown_gate", f"gate {gate!r} is not in the server config")
        if unit not in units:
            raise WireError("unknown_unit", f"unit {unit!r} is not configured for gate {gate!r}")

    def _check_time(self, message: UnitMessage) -> None:
        at = stamp(message)
        now = self._clock()
        limit = now + self._max_future
        if at > limit:
            raise WireError("future", f"{at.isoformat()} is beyond the clock skew bound {limit.isoformat()}")
        if at.year < 2000:
            raise WireError("absurd", f"timestamp {at.isoformat()} predates any deployment")
        # status is exempt: a Last Will carries the time its unit connected, which may be long ago,
        # and the alert rules still need to hear that the unit went offline
        oldest = now - self._max_age
        point_time = message.window_start if isinstance(message, CountsMessage) else at
        if not isinstance(message, StatusMessage) and point_time < oldest:
            raise WireError("too_old", f"{point_time.isoformat()} is older than validation.max_age_s "
                                       f"({self.config.max_age_s:g} s): the database would drop it")

    def _check_plausible(self, message: CountsMessage) -> None:
        total = message.total()
        if total > self.config.max_vehicles_per_window:
            raise WireError("absurd", f"{total} crossings in one window > {self.config.max_vehicles_per_window}")
        q = message.queue
        if q.length_mean > q.length_max + 1e-6 or q.stationary_max > q.length_max:
            raise WireError("absurd", "queue mean or stationary count above the queue maximum")


def stamp(message: UnitMessage) -> datetime:
    """When a message happened: a window at its end, an event at its crossing, the rest at `at`."""
    if isinstance(message, CountsMessage):
        return message.window_start + timedelta(seconds=message.window_s)
    if isinstance(message, EventMessage):
        return message.event.at
    return message.at


def _number_or_depth_problem(payload: bytes) -> WireError | None:
    """Why a payload the contract refused is hostile rather than merely wrong, if it is: nested too
    deep, an integer no field can hold, or one no database can. Only rejected payloads get here, so
    valid traffic pays nothing for the second parse."""
    long_ints: list[str] = []

    def parse_int(text: str) -> int:
        digits = len(text.lstrip("-"))
        if digits > HUGE_DIGITS:  # converting it would be the attack (CPU), so don't
            long_ints.append(text)
            return 0
        value = int(text)
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            long_ints.append(text)
        return value

    try:
        data = json.loads(payload, parse_int=parse_int)
    except RecursionError:
        return WireError("too_deep", f"JSON nested deeper than the parser's recursion limit (> {MAX_DEPTH})")
    except ValueError:  # not JSON at all (UnicodeDecodeError is a ValueError too)
        return None
    depth = _depth(data)
    if depth > MAX_DEPTH:
        return WireError("too_deep", f"JSON nested {depth} deep > {MAX_DEPTH}")
    if long_ints:
        longest = max(long_ints, key=len)
        digits = len(longest.lstrip("-"))
        if digits > HUGE_DIGITS:
            return WireError("huge_number", f"an integer of {digits} digits")
        return WireError("int64_overflow", f"integer {longest} does not fit a signed 64-bit field")
    return None


def _depth(value: Any) -> int:
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, dict | list):
            if d > MAX_DEPTH:
                return d
            deepest = max(deepest, d)
            todo += [(x, d + 1) for x in (v.values() if isinstance(v, dict) else v)]
    return deepest
