"""Validation: every input ends as a trusted message or a WireError with a reason, never anything else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.config import ValidationConfig
from server.validation import Validator
from tests.server.fuzz import bad_messages
from tests.server.helpers import GATE, counts_message
from wire.errors import WireError
from wire.payloads import CountsMessage, encode, topic_for

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def validator(**kw) -> Validator:
    return Validator(ValidationConfig(**{"gates": {GATE: ["u1", "u2"]}, **kw}), clock=lambda: NOW)


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


def test_unknown_units_accepted_only_when_configured() -> None:
    m = counts_message("u3", "l1", 0, start=NOW - timedelta(hours=1))
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
