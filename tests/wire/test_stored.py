"""The `stored` acknowledgement and the health fields of the end-to-end protocol, on the wire."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from wire.errors import WireError
from wire.payloads import CameraState, HealthMessage, StoredMessage, decode_message, encode, topic_for
from wire.topics import SERVER_KINDS, UNIT_KINDS, Topic, TopicKind, is_own_output

AT = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_stored_round_trips_on_the_units_own_stored_topic() -> None:
    m = StoredMessage(gate="huu-nghi", unit="u1", through_seq=812, at=AT, gaps=3, resets=1)
    topic = topic_for(m)
    assert topic == "gatewatch/v1/huu-nghi/u1/stored" == str(Topic.stored("huu-nghi", "u1"))
    assert decode_message(topic, encode(m)) == m
    assert json.loads(encode(m))["schema"] == 1


def test_stored_for_another_unit_is_a_topic_mismatch() -> None:
    m = StoredMessage(gate="huu-nghi", unit="u2", through_seq=5, at=AT)
    with pytest.raises(WireError) as err:
        decode_message("gatewatch/v1/huu-nghi/u1/stored", encode(m))
    assert err.value.reason == "topic_mismatch"


def test_stored_is_server_output_and_never_a_unit_topic() -> None:
    assert TopicKind.STORED in SERVER_KINDS and TopicKind.STORED not in UNIT_KINDS
    assert is_own_output("gatewatch/v1/huu-nghi/u1/stored")
    assert not is_own_output("gatewatch/v1/huu-nghi/u1/counts")
    with pytest.raises(WireError):
        Topic.unit("huu-nghi", "u1", TopicKind.STORED)


@pytest.mark.parametrize("field", ["through_seq", "gaps"])
@pytest.mark.parametrize("value", [-1, 2**63, 2**64])
def test_stored_numbers_stay_in_int64(field: str, value: int) -> None:
    raw = {"schema": 1, "kind": "stored", "gate": "g", "unit": "u1", "through_seq": 1, "at": AT.isoformat()}
    with pytest.raises(WireError) as err:
        decode_message("gatewatch/v1/g/u1/stored", json.dumps({**raw, field: value}).encode())
    assert err.value.reason == "invalid"
    assert decode_message("gatewatch/v1/g/u1/stored", json.dumps({**raw, "through_seq": 2**63 - 1}).encode())


def test_health_carries_the_outbox_first_seq_and_the_storage_loss() -> None:
    h = HealthMessage(gate="g", unit="u1", seq=40, at=AT, interval_s=30, fps=9, inference_ms=80,
                      camera=CameraState.UP, outbox_depth=3, mem_mb=200, uptime_s=5,
                      outbox_first_seq=37, outbox_lost=2)
    back = decode_message(topic_for(h), encode(h))
    assert isinstance(back, HealthMessage) and (back.outbox_first_seq, back.outbox_lost) == (37, 2)
    old = json.loads(encode(h))
    del old["outbox_first_seq"], old["outbox_lost"]  # a unit from before the protocol
    back = decode_message(topic_for(h), json.dumps(old).encode())
    assert isinstance(back, HealthMessage) and (back.outbox_first_seq, back.outbox_lost) == (None, 0)
    with pytest.raises(WireError):
        decode_message(topic_for(h), json.dumps({**old, "seq": 2**63}).encode())
