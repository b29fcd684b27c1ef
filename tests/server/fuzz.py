"""A seeded generator of bad unit messages, each with the rejection reason it must get."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from gatewatch.hostile import Target, families
from tests.server.helpers import GATE, LANES, counts_message
from wire.payloads import MAX_PAYLOAD_BYTES, HealthMessage, encode, topic_for

Bad = tuple[str, bytes, str]  # topic, payload, expected reason


def _valid(rng: random.Random) -> dict[str, Any]:
    unit = rng.choice(["u1", "u2"])
    m = counts_message(unit, rng.choice(LANES[unit]), rng.randrange(1000))
    return dict(json.loads(encode(m)))


def _topic(d: dict[str, Any], kind: str = "counts") -> str:
    return f"gatewatch/v1/{d['gate']}/{d['unit']}/{kind}"


def _mutations(rng: random.Random) -> list[tuple[str, Any]]:
    def random_bytes() -> Bad:
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        if payload[:1] in (b"{", b"[", b'"') or payload.strip()[:1].isdigit():
            payload = b"\xff" + payload  # keep it undecodable
        return (f"gatewatch/v1/{GATE}/u1/counts", payload, "bad_json")

    def truncated_json() -> Bad:
        text = json.dumps(_valid(rng))
        return (f"gatewatch/v1/{GATE}/u1/counts", text[: rng.randrange(1, len(text) - 1)].encode(), "bad_json")

    def not_an_object() -> Bad:
        value = rng.choice([[1, 2], 3, "counts", None, True, [], 2.5])
        return (f"gatewatch/v1/{GATE}/u1/counts", json.dumps(value).encode(), "bad_json")

    def no_schema() -> Bad:
        d = _valid(rng)
        del d["schema"]
        return (_topic(d), json.dumps(d).encode(), "missing_schema")

    def unknown_schema() -> Bad:
        d = _valid(rng)
        d["schema"] = rng.choice([0, 2, 99, -1, "1", None, True, [1], {"v": 1}])
        return (_topic(d), json.dumps(d).encode(), "unknown_schema")

    def missing_field() -> Bad:
        d = _valid(rng)
        del d[rng.choice(["gate", "unit", "lane", "window_start", "window_s", "seq"])]
        topic = f"gatewatch/v1/{GATE}/u1/counts"
        return (topic, json.dumps(d).encode(), "invalid")

    def absurd_value() -> Bad:
        d = _valid(rng)
        field, value = rng.choice([
            ("window_s", 0), ("window_s", -10), ("window_s", 1e9), ("camera_up", 1.5), ("camera_up", -0.1),
            ("frames", -1), ("frames", 10**9), ("seq", -5), ("window_start", "yesterday"),
            ("window_start", "2026-11-24T08:00:00"), ("counts", {"truck": {"in": -3}}),
            ("counts", {"truck": {"in": 10**7}}), ("counts", {"tank": {"in": 1}}), ("counts", {"car": {"IN!": 1}}),
            ("queue", {"length_max": -1}), ("queue", {"wait_p50_s": 1e12}), ("loop_count", "many"),
            ("lane", "Lane 1"), ("lane", ""), ("lane", "x" * 100),
        ])
        d[field] = value
        return (_topic(d), json.dumps(d).encode(), "invalid")

    def extra_field() -> Bad:
        d = _valid(rng)
        d[rng.choice(["plate", "track_id", "note", "x"])] = "51C-12345"
        return (_topic(d), json.dumps(d).encode(), "invalid")

    def wrong_kind_for_topic() -> Bad:
        d = _valid(rng)
        return (_topic(d, rng.choice(["health", "status", "events"])), json.dumps(d).encode(), "topic_mismatch")

    def identity_mismatch() -> Bad:
        d = _valid(rng)
        topic = f"gatewatch/v1/{GATE}/{'u3' if d['unit'] != 'u3' else 'u1'}/counts"
        return (topic, json.dumps(d).encode(), "topic_mismatch")

    def future_window() -> Bad:
        m = counts_message("u1", "l1", 0, start=_now() + timedelta(minutes=rng.randrange(10, 10_000)))
        return (topic_for(m), encode(m), "future")

    def unknown_unit() -> Bad:
        d = _valid(rng)
        d["unit"] = f"rogue{rng.randrange(100)}"
        return (_topic(d), json.dumps(d).encode(), "unknown_unit")

    def unknown_gate() -> Bad:
        d = _valid(rng)
        d["gate"] = rng.choice(["tan-thanh", "chi-ma", "nowhere"])
        return (_topic(d), json.dumps(d).encode(), "unknown_gate")

    def implausible() -> Bad:
        d = _valid(rng)
        if rng.random() < 0.5:
            d["counts"] = {"truck": {"in": 3000, "out": 3000}}
        else:
            d["queue"] = {"length_max": 2, "length_mean": 1.0, "stationary_max": 5}
        return (_topic(d), json.dumps(d).encode(), "absurd")

    def bad_topic() -> Bad:
        d = _valid(rng)
        topic = rng.choice([f"gatewatch/v1/{GATE}/u1/bogus", "gatewatch/v1/HUU NGHI/u1/counts",
                            f"gatewatch/v1/{GATE}/U1/counts"])
        return (topic, json.dumps(d).encode(), "bad_topic" if topic.endswith("bogus") else "bad_id")

    def bad_health() -> Bad:
        h = HealthMessage(gate=GATE, unit="u1", seq=1, at=_now(), interval_s=10, fps=5, inference_ms=50,
                          camera="up", outbox_depth=0, mem_mb=10, uptime_s=5)
        d = dict(json.loads(encode(h)))
        d[rng.choice(["fps", "cpu_temp_c", "interval_s"])] = rng.choice([-100, 1e6, "hot"])
        return (topic_for(h), json.dumps(d).encode(), "invalid")

    return [(f.__name__, f) for f in (
        random_bytes, truncated_json, not_an_object, no_schema, unknown_schema, missing_field, absurd_value,
        extra_field, wrong_kind_for_topic, identity_mismatch, future_window, unknown_unit, unknown_gate,
        implausible, bad_topic, bad_health,
    )] + families(Target(GATE, LANES, _now), rng)


def _now() -> datetime:
    return datetime.now(UTC)


def bad_messages(n: int, seed: int = 20261124, oversized: int = 5) -> Iterator[Bad]:
    rng = random.Random(seed)
    gens = _mutations(rng)
    for _ in range(oversized):
        d = _valid(rng)
        yield (_topic(d), json.dumps(d).encode() + b" " * MAX_PAYLOAD_BYTES, "oversized")
    for _ in range(n - oversized):
        _, gen = rng.choice(gens)
        yield gen()
