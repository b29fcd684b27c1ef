"""common.mqtt's PUBLISH decoder for packets without properties must read exactly what paho's does."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import common.mqtt  # noqa: F401  (installs the decoder)

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311
PAHO = _packet.decode_publish.paho  # type: ignore[attr-defined]


def publish(topic: bytes, payload: bytes, qos: int, mid: int, props: bytes | None) -> tuple[int, bytes]:
    """(header, packet after the fixed header), as a broker sends it."""
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    if props is not None:
        body += props
    return 0x30 | (qos << 1) | 0x01, body + payload


def user_props() -> bytes:
    p: Any = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    p.MessageExpiryInterval = 30
    p.UserProperty = [("unit", "u1")]
    packed: bytes = p.pack()
    return packed


def test_the_decoder_is_installed() -> None:
    assert getattr(_packet.decode_publish, "gatewatch_fast", False)


@pytest.mark.parametrize("qos,mid", [(0, 0), (1, 1), (1, 65535), (2, 4242)])
@pytest.mark.parametrize("payload", [b"", b'{"schema":1}', bytes(range(256)) * 40])
def test_no_properties_reads_as_paho_does(qos: int, mid: int, payload: bytes) -> None:
    header, packet = publish(b"gatewatch/v1/g/u/counts", payload, qos, mid, b"\x00")
    ours = _packet.decode_publish(header, bytearray(packet), V5)
    paho = PAHO(header, bytearray(packet), V5)
    assert (ours.dup, ours.qos, ours.retain, ours.topic, ours.mid, ours.payload) == (
        paho.dup, paho.qos, paho.retain, paho.topic, paho.mid, paho.payload)
    assert type(ours.topic) is bytes and type(ours.payload) is bytes
    assert ours.properties is None and paho.properties is not None and not paho.properties.json()


@pytest.mark.parametrize("qos", [0, 1])
def test_properties_and_mqtt311_go_to_paho(qos: int) -> None:
    header, packet = publish(b"t/x", b"data", qos, 7, user_props())
    ours = _packet.decode_publish(header, bytearray(packet), V5)
    props: Any = ours.properties
    assert props is not None and props.MessageExpiryInterval == 30
    assert props.UserProperty == [("unit", "u1")] and ours.payload == b"data"
    header, packet = publish(b"t/x", b"data", qos, 7, None)
    v3 = _packet.decode_publish(header, bytearray(packet), V311)
    assert v3.properties is None and v3.topic == b"t/x" and v3.payload == b"data"


@pytest.mark.parametrize("packet", [b"", b"\x00", b"\x00\x05ab", b"\x00\x01t\x00"])
def test_a_short_packet_is_paho_s_error(packet: bytes) -> None:
    with pytest.raises(MalformedPacket):
        _packet.decode_publish(0x32, bytearray(packet), V5)


@pytest.mark.parametrize("protocol", [V5, V311])
def test_a_plain_puback_reads_as_paho_does(protocol: MQTTProtocolVersion) -> None:
    packet = bytearray(struct.pack("!H", 513))
    ours = _packet.decode_puback(0x40, packet, protocol)
    paho = _packet.decode_puback.paho(0x40, packet, protocol)  # type: ignore[attr-defined]
    assert ours.mid == paho.mid == 513
    assert ours.reason == paho.reason and not ours.reason.is_failure
    assert ours.properties.json() == paho.properties.json() == {}  # type: ignore[no-untyped-call]


def test_a_refusing_puback_and_a_short_one_go_to_paho() -> None:
    refused = _packet.decode_puback(0x40, bytearray(b"\x00\x07\x87"), V5)  # 0x87: not authorized
    assert refused.mid == 7 and refused.reason.is_failure and refused.reason.value == 0x87
    with pytest.raises(MalformedPacket):
        _packet.decode_puback(0x40, bytearray(b"\x00"), V5)


@pytest.mark.parametrize("code", [0x00, 0x10])
def test_a_puback_with_a_plain_reason_code_reads_as_paho_does(code: int) -> None:
    packet = bytearray(b"\x01\x02" + bytes([code]))
    ours = _packet.decode_puback(0x40, packet, V5)
    paho = _packet.decode_puback.paho(0x40, packet, V5)  # type: ignore[attr-defined]
    assert ours.mid == paho.mid == 258 and ours.reason == paho.reason and ours.reason.value == code
    assert not ours.reason.is_failure
