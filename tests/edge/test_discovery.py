"""Home Assistant discovery, as pure logic: node ids one-to-one, configs well-formed, lane states
adding up, strays deleted, Home Assistant's birth answered (the real broker: tests/runtime)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edge.config import UnitConfig
from edge.service.discovery import Discovery
from wire.homeassistant import HA_ID_PATTERN, LaneState, node_id, parse_node_id
from wire.payloads import QueueStats, VehicleClass, WindowRecord

ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,12}", fullmatch=True)
#: Home Assistant's own matcher for discovery topics (homeassistant/components/mqtt/discovery.py)
TOPIC = re.compile(r"^homeassistant/(?P<component>\w+)/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$")


def config(lanes: tuple[str, ...] = ("l1", "l2"), **over: Any) -> UnitConfig:
    return UnitConfig.model_validate({
        "gate": "huu-nghi", "unit": "cam1", "source": {"kind": "usb"},
        "lanes": [{"id": lane, "line": {"a": [0, 0.5], "b": [1, 0.5]}} for lane in lanes],
        "homeassistant": {"enabled": True}, **over,
    })


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bool]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.sent.append((topic, payload, retain))


def record(lane: str, i: int, counts: dict[VehicleClass, dict[str, int]]) -> WindowRecord:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=10 * i)
    queue = QueueStats(length_max=4 + i, stationary_max=i, expected_wait_s=30.0 * i or None)
    return WindowRecord(gate="huu-nghi", unit="cam1", lane=lane, window_start=start, window_s=10, counts=counts,
                        queue=queue, camera_up=0.5)


@given(ids, ids, ids, ids)
def test_node_ids_are_one_to_one_and_read_back(g1: str, u1: str, g2: str, u2: str) -> None:
    a, b = node_id(g1, u1), node_id(g2, u2)
    assert re.fullmatch(HA_ID_PATTERN, a)
    assert (a == b) == ((g1, u1) == (g2, u2))
    assert parse_node_id(a) == (g1, u1)


def test_the_naive_join_would_not_be_one_to_one() -> None:
    """Why the node id is not `<gate>_<unit>`: two units would share a node, and so an ACL grant."""
    assert f"{'a_b'}_{'c'}" == f"{'a'}_{'b_c'}"
    assert node_id("a_b", "c") != node_id("a", "b_c")


def test_configs_are_well_formed() -> None:
    d = Discovery(config(), version="9.9")
    assert len(d.configs) == 2 * (3 + 2 * len(VehicleClass)) + 1
    unique_ids = set()
    for topic, raw in d.configs.items():
        m = TOPIC.match(topic)
        assert m, topic
        assert m["node"] == "huu-nghi_AT_cam1"
        c = json.loads(raw)
        unique_ids.add(c["unique_id"])
        assert c["device"]["identifiers"] == ["gatewatch/huu-nghi/cam1"] and c["device"]["sw_version"] == "9.9"
        assert c["availability"] == [{
            "topic": "gatewatch/v1/huu-nghi/cam1/status", "value_template": "{{ value_json.state }}",
            "payload_available": "online", "payload_not_available": "offline",
        }]
        assert c["state_topic"] and c["value_template"] and c["name"] and c["origin"]["name"] == "gatewatch"
        obj = m["object"]
        if obj.startswith(("queue-", "wait-")) or "_window-" in obj:
            assert c["state_class"] == "measurement", obj
        if "_total-" in obj:
            assert c["state_class"] == "total_increasing", obj
        if m["component"] == "sensor" and "state_class" in c:
            assert c["unit_of_measurement"] in ("vehicles", "s"), obj
            assert c["state_topic"] == f"gatewatch/v1/huu-nghi/cam1/lane/{obj.split('-', 1)[1]}"
        if obj.startswith("wait-"):
            assert (c["device_class"], c["unit_of_measurement"]) == ("duration", "s")
        if obj.startswith("alert-"):
            assert c["state_topic"] == f"gatewatch/v1/huu-nghi/{obj.split('-', 1)[1]}/alert"
            assert c["device_class"] == "enum" and c["options"] == ["green", "yellow", "orange", "red"]
        if obj == "camera":
            assert m["component"] == "binary_sensor" and c["state_topic"] == "gatewatch/v1/huu-nghi/cam1/health"
    assert len(unique_ids) == len(d.configs)


def test_lane_state_adds_up_the_windows() -> None:
    d = Discovery(config())
    client = FakeClient()
    d.on_record(client, record("l1", 0, {VehicleClass.TRUCK: {"in": 2, "out": 1}}), connected=True)
    d.on_record(client, record("l2", 0, {VehicleClass.CAR: {"in": 5}}), connected=True)
    d.on_record(client, record("l1", 1, {VehicleClass.TRUCK: {"in": 1}, VehicleClass.BUS: {"out": 4}}),
                connected=False)
    # sent while connected only; the newest of each lane goes out on the next connect
    assert [(t, r) for t, _, r in client.sent] == [
        ("gatewatch/v1/huu-nghi/cam1/lane/l1", True), ("gatewatch/v1/huu-nghi/cam1/lane/l2", True)]
    client.sent.clear()
    d.on_connect(client)
    states = {t: LaneState.model_validate_json(p) for t, p, _ in client.sent if "/lane/" in t}
    l1 = states["gatewatch/v1/huu-nghi/cam1/lane/l1"]
    assert l1.window == {VehicleClass.TRUCK: 1, VehicleClass.BUS: 4, VehicleClass.CAR: 0, VehicleClass.MOTORBIKE: 0}
    assert l1.total == {VehicleClass.TRUCK: 4, VehicleClass.BUS: 4, VehicleClass.CAR: 0, VehicleClass.MOTORBIKE: 0}
    assert (l1.queue, l1.stationary, l1.expected_wait_s, l1.camera_up) == (5, 1, 30.0, 0.5)
    assert states["gatewatch/v1/huu-nghi/cam1/lane/l2"].total[VehicleClass.CAR] == 5
    assert sum(1 for t, _, r in client.sent if t.endswith("/config") and r) == len(d.configs)


def test_strays_under_our_node_are_deleted_and_birth_is_answered() -> None:
    d = Discovery(config(lanes=("l1",)))
    client = FakeClient()
    ours = next(iter(d.configs))
    stray = "homeassistant/sensor/huu-nghi_AT_cam1/queue-l2/config"
    assert d.on_message(client, ours, d.configs[ours]) and client.sent == []
    assert d.on_message(client, stray, b'{"name": "old"}')
    assert d.on_message(client, stray, b"")  # our own deletion, echoed back: nothing more to do
    assert d.on_message(client, "gatewatch/v1/huu-nghi/cam1/lane/l2", b"{}")
    assert d.on_message(client, "gatewatch/v1/huu-nghi/cam1/lane/l1", b"{}")  # a lane we have: kept
    assert client.sent == [(stray, b"", True), ("gatewatch/v1/huu-nghi/cam1/lane/l2", b"", True),
                           ("gatewatch/v1/huu-nghi/cam1/lane/l2", b"", True)]
    client.sent.clear()
    # another unit's node, and alerts: not ours to judge
    assert not d.on_message(client, "homeassistant/sensor/huu-nghi_AT_cam2/queue-l2/config", b"{}")
    assert not d.on_message(client, "gatewatch/v1/huu-nghi/l1/alert", b"{}")
    assert d.on_message(client, "homeassistant/status", b"offline") and client.sent == []
    assert d.on_message(client, "homeassistant/status", b"online")
    assert sorted(t for t, _, _ in client.sent) == sorted(d.configs)
