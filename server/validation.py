"""Everything a message must pass before it may touch the database or the alert state.

The wire contract (`wire.decode_message`) checks shape and identity; the checks here need the
server's own knowledge: which units exist, and what time it is. A rejection is always a
`WireError` with a stable reason code, so the dead-letter topic and the health counters can
group rejections without parsing text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from server.config import ValidationConfig
from wire.errors import WireError
from wire.payloads import (
    CountsMessage,
    EventMessage,
    HealthMessage,
    Message,
    StatusMessage,
    decode_message,
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


UnitMessage = CountsMessage | EventMessage | StatusMessage | HealthMessage


class Validator:
    """Turns (topic, payload) into a trusted unit message or a WireError with a reason."""

    def __init__(self, config: ValidationConfig, clock: Clock = utc_now) -> None:
        self.config = config
        self._clock = clock
        self._known = {gate: frozenset(units) for gate, units in config.gates.items()}

    def check(self, topic: str, payload: bytes) -> UnitMessage:
        message: Message = decode_message(topic, payload, max_bytes=self.config.max_payload_bytes)
        if not isinstance(message, CountsMessage | EventMessage | StatusMessage | HealthMessage):
            # alerts are ours to publish; one arriving here came from somebody else
            raise WireError("not_a_unit_message", f"{message.kind} messages are published by the server")
        self._check_known(message.gate, message.unit)
        self._check_time(message)
        if isinstance(message, CountsMessage):
            self._check_plausible(message)
        return message

    def _check_known(self, gate: str, unit: str) -> None:
        if self.config.accept_unknown:
            return
        units = self._known.get(gate)
        if units is None:
            raise WireError("unknown_gate", f"gate {gate!r} is not in the server config")
        if unit not in units:
            raise WireError("unknown_unit", f"unit {unit!r} is not configured for gate {gate!r}")

    def _check_time(self, message: UnitMessage) -> None:
        if isinstance(message, CountsMessage):
            stamp = message.window_start + timedelta(seconds=message.window_s)
        elif isinstance(message, EventMessage):
            stamp = message.event.at
        else:
            stamp = message.at
        limit = self._clock() + timedelta(seconds=self.config.max_future_s)
        if stamp > limit:
            raise WireError("future", f"{stamp.isoformat()} is beyond the clock skew bound {limit.isoformat()}")
        if stamp.year < 2000:
            raise WireError("absurd", f"timestamp {stamp.isoformat()} predates any deployment")

    def _check_plausible(self, message: CountsMessage) -> None:
        total = message.total()
        if total > self.config.max_vehicles_per_window:
            raise WireError("absurd", f"{total} crossings in one window > {self.config.max_vehicles_per_window}")
        q = message.queue
        if q.length_mean > q.length_max + 1e-6 or q.stationary_max > q.length_max:
            raise WireError("absurd", "queue mean or stationary count above the queue maximum")
