"""Validation: every input ends as a trusted message or a WireError with a reason, never anything else."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewatch.hostile import Target, families
from server.config import ValidationConfig
from server.validation import Rejected, Validator
from tests.server.fuzz import bad_messages
from tests.server.helpers import DECLARED, GATE, LANES, counts_message
from wire.errors import WireError
from wire.payloads import CountsMessage, encode, topic_for

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def validator(**kw) -> Validator:
    return Validator(ValidationConfig(**{"gates": DECLARED, **kw}), clock=lambda: NOW)


def test_a_valid_record_passes_unchanged() -> None:
    m = counts_message("u1", "l1", 3, start=NOW - timedelta(hours=1))
    got = validator().check(topic_for(m), encode(m))
    assert isinstance(got, CountsMessage) and got == m


@pytest.mark.parametrize(("skew_s", "ok"), [(0, True), (119, True), (121, False), (3600, False)])
def test_clock_skew_bound(skew_s: int, ok: bool) -> None:
    # the window *ends* skew_s after the server's now
    m = counts_message("u1", "l1", 0, start=NOW + timedelta(seconds=skew_s - 10))
    v = validator(max_future_s=120)
    if ok:
        v.check(topic_for(m), encode(m))
    else:
        with pytest.raises(WireError) as err:
            v.check(topic_for(m), encode(m))
        assert err.value.reason == "future"


def test_each_hostile_family_is_rejected_with_a_reason_of_its_own() -> None:
    v = validator()
    seen: dict[str, set[str]] = {}
    for name, gen in families(Target(GATE, LANES, lambda: NOW), random.Random(3)):
        for _ in range(25):
            topic, payload, want = gen()
            with pytest.raises(WireError) as err:
                v.check(topic, payload)
            assert err.value.reason == want, (name, err.value.detail)
            seen.setdefault(name, set()).add(err.value.reason)
    reasons = [r for rs in seen.values() for r in rs]
    assert len(reasons) == len(set(reasons)) == 7  # one reason per family, none shared


def test_a_window_ahead_of_the_clock_is_stored_but_kept_from_the_alerts() -> None:
    v = validator(clock_tolerance_s=10, max_future_s=120)
    ahead = counts_message("u1", "l1", 0, start=NOW + timedelta(seconds=50))  # ends 60 s ahead
    close = counts_message("u1", "l1", 0, start=NOW - timedelta(seconds=5))  # ends 5 s ahead
    assert v.check(topic_for(ahead), encode(ahead)) == ahead and v.ahead(ahead)
    assert v.check(topic_for(close), encode(close)) == close and not v.ahead(close)


def test_a_rejected_message_from_a_known_unit_still_has_its_seq() -> None:
    m = counts_message("u2", "l1", 0, seq=41, start=NOW - timedelta(hours=1))  # l1 is u1's
    with pytest.raises(Rejected) as err:
        validator().check(topic_for(m), encode(m))
    assert err.value.reason == "foreign_lane" and err.value.message.seq == 41


def test_unknown_units_accepted_only_when_configured() -> None:
    m = counts_message("u4", "l9", 0, start=NOW - timedelta(hours=1))
    with pytest.raises(WireError) as err:
        validator().check(topic_for(m), encode(m))
    assert err.value.reason == "unknown_unit"
    assert validator(accept_unknown=True).check(topic_for(m), encode(m)) == m


def test_alerts_from_anyone_but_the_server_are_refused() -> None:
    payload = json.dumps({"schema": 1, "kind": "alert", "gate": GATE, "lane": "l1", "at": NOW.isoformat(),
                          "valid_s": 60, "level": "red"}).encode()
    with pytest.raises(WireError) as err:
        validator().check(f"gatewatch/v1/{GATE}/l1/alert", payload)
    assert err.value.reason == "not_a_unit_message"


def test_seeded_fuzz_corpus_gets_the_expected_reasons() -> None:
    v = validator()
    v._clock = lambda: datetime.now(UTC)  # the corpus stamps some messages with the real now
    wrong = []
    for topic, payload, reason in bad_messages(2000, seed=1):
        try:
            v.check(topic, payload)
            wrong.append((reason, "accepted"))
        except WireError as exc:
            if exc.reason != reason:
                wrong.append((reason, exc.reason))
    assert wrong == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_VALID = json.loads(encode(counts_message("u1", "l1", 0, start=NOW - timedelta(hours=1))))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(_VALID)), value=json_values, drop=st.booleans())
def test_mutated_records_never_crash_the_validator(key: str, value, drop: bool) -> None:
    d = dict(_VALID)
    if drop:
        d.pop(key)
    else:
        d[key] = value
    try:
        payload = json.dumps(d, allow_nan=True).encode()
    except (TypeError, ValueError):
        return
    try:
        validator().check(f"gatewatch/v1/{GATE}/u1/counts", payload)
    except WireError as exc:
        assert exc.reason


@settings(max_examples=300, deadline=None)
@given(topic=st.text(max_size=60), payload=st.binary(max_size=300))
def test_arbitrary_topics_and_bytes_never_crash_the_validator(topic: str, payload: bytes) -> None:
    try:
        validator().check(topic, payload)
    except WireError as exc:
        assert exc.reason
