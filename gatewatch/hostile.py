"""Hostile unit traffic, each family with the reason the server must reject it with.

Shared by the server's fuzz tests (tests/server/fuzz.py adds the older families) and by
`gatewatch bench-server --hostile`, which mixes it into valid traffic to show what rejecting it
costs. Every payload comes from a unit's own topic, as the broker's ACL would let it through:
these are the attacks a unit (or a bug on it) can make, not a stranger.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from wire.payloads import CountsMessage, CrossingEvent, EventMessage, QueueStats, VehicleClass, encode

#: topic, payload, the reason the server must give
Bad = tuple[str, bytes, str]


@dataclass(frozen=True)
class Target:
    """The gate under attack: its units and the lanes each owns (as the server's config declares)."""

    gate: str
    lanes: Mapping[str, Sequence[str]]
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def record(self, rng: random.Random, *, unit: str | None = None, lane: str | None = None,
               start: datetime | None = None, seq: int | None = None) -> CountsMessage:
        """A valid window record of an owned lane, a day old unless told otherwise."""
        unit = unit or rng.choice(sorted(self.lanes))
        lane = lane or rng.choice(self.lanes[unit])
        if start is None:
            start = datetime.fromtimestamp((self.now().timestamp() // 10) * 10 - 86_400 + 10 * rng.randrange(500), UTC)
        return CountsMessage(
            gate=self.gate, unit=unit, lane=lane, seq=rng.randrange(1, 10**6) if seq is None else seq,
            window_start=start, window_s=10.0,
            counts={VehicleClass.TRUCK: {"in": rng.randrange(5), "out": rng.randrange(5)}},
            queue=QueueStats(length_max=2, length_mean=1.0, stationary_max=1), frames=100,
        )

    def topic(self, unit: str, kind: str = "counts") -> str:
        return f"gatewatch/v1/{self.gate}/{unit}/{kind}"


def families(t: Target, rng: random.Random) -> list[tuple[str, Callable[[], Bad]]]:
    def as_dict(m: CountsMessage) -> dict[str, Any]:
        return dict(json.loads(encode(m)))

    def int64_overflow() -> Bad:
        m = t.record(rng)
        if rng.random() < 0.5:
            d = as_dict(m)
            d["seq"] = rng.choice([2**63, 2**64, 2**63 + rng.randrange(10**6), -(2**63) - 1])
            return (t.topic(m.unit), json.dumps(d).encode(), "int64_overflow")
        lane = rng.choice(t.lanes[m.unit])
        event = EventMessage(gate=t.gate, unit=m.unit, seq=m.seq, event=CrossingEvent(
            lane=lane, at=m.window_start, vehicle_class=VehicleClass.CAR, direction="in",
            track_id=rng.choice([2**63, 2**64, 2**63 + 7])))
        return (t.topic(m.unit, "events"), encode(event), "int64_overflow")

    def deep_json() -> Bad:
        m = t.record(rng)
        depth = rng.choice([20, 200, 5_000, 30_000])  # parsed and measured, or past the parser's recursion
        text = json.dumps(as_dict(m))[:-1] + ', "note": ' + "[" * depth + "]" * depth + "}"
        return (t.topic(m.unit), text.encode(), "too_deep")

    def huge_integer() -> Bad:
        m = t.record(rng)
        d = as_dict(m)
        digits = rng.choice([50, 4_301, 5_000, 20_000])
        field = rng.choice(["seq", "frames", "window_s"])
        text = json.dumps(d).replace(f'"{field}": {json.dumps(d[field])}', f'"{field}": ' + "7" * digits)
        return (t.topic(m.unit), text.encode(), "huge_number")

    def many_directions() -> Bad:
        m = t.record(rng)
        d = as_dict(m)
        d["counts"] = {"truck": {f"d{i}": 1 for i in range(1000)}}
        d["queue"] = {"length_max": 0, "length_mean": 0.0, "stationary_max": 0}
        return (t.topic(m.unit), json.dumps(d).encode(), "too_many_fields")

    def foreign_lane() -> Bad:
        units = sorted(t.lanes)
        unit = rng.choice(units)
        others = [ln for u in units if u != unit for ln in t.lanes[u]]
        lane = rng.choice(others) if others and rng.random() < 0.7 else f"forged{rng.randrange(10_000)}"
        m = t.record(rng, unit=unit, lane=lane)
        return (t.topic(unit), encode(m), "foreign_lane")

    def future_window() -> Bad:
        start = t.now() + timedelta(seconds=rng.randrange(200, 10**6))
        m = t.record(rng, start=datetime.fromtimestamp((start.timestamp() // 10) * 10, UTC))
        return (t.topic(m.unit), encode(m), "future")

    def too_old() -> Bad:
        start = t.now() - timedelta(days=rng.randrange(91, 4000))
        m = t.record(rng, start=datetime.fromtimestamp((start.timestamp() // 10) * 10, UTC))
        return (t.topic(m.unit), encode(m), "too_old")

    return [(f.__name__, f) for f in (int64_overflow, deep_json, huge_integer, many_directions, foreign_lane,
                                      future_window, too_old)]


def hostile(n: int, target: Target, seed: int = 2026) -> Iterator[Bad]:
    """`n` bad messages, the families in turn, seeded."""
    rng = random.Random(seed)
    gens = families(target, rng)
    for i in range(n):
        yield gens[i % len(gens)][1]()
