"""The one factory of paho clients, for everything in gatewatch that speaks MQTT.

The edge `Publisher`, `gatewatch edge --check-broker`, the server `Subscriber`, the demo's live
view, the server benchmark's load generator and the test probes all get their client here, so
they agree on what a gatewatch client is: paho's VERSION2 callbacks, MQTT v5 (reason codes on
CONNACK, PUBACK and SUBACK; session expiry), credentials only with a username, TLS from PEM files
(a file that cannot be loaded is one clear error, not a traceback), and sub-second reconnect
delays. Callbacks, the Last Will and connecting stay with the caller: they are its behaviour.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from common.config import MqttConnection
from common.errors import GatewatchError


class MqttError(GatewatchError):
    """The MQTT client cannot be set up (a TLS file that cannot be loaded)."""


def _fast_publish_decode() -> None:
    """Decode MQTT 5 PUBLISH packets without properties, and plain PUBACKs, without paho's `Properties`.

    paho 2.x makes a `Properties` object for every MQTT 5 PUBLISH it receives, also when the packet
    carries none (as every gatewatch message does), and its constructor builds two dicts of the
    protocol's 27 property names each time. On this project's 2-core test machine that was 40-80 µs
    of the 140-180 µs paho spent per received message: the largest single cost of the server's
    ingest (MQTT 3.1.1, which has no properties, took 100-110 µs). A packet whose property length is
    0 is decoded here, as paho would, with `properties` None (as paho gives for 3.1.1); every other
    packet, and anything unexpected, goes to paho's own decoder, which also raises its errors. Only
    the 2.x line it was checked against is patched (tests/common/test_mqtt_decode.py compares both).
    """
    import paho.mqtt

    if not getattr(paho.mqtt, "__version__", "").startswith("2."):
        return
    from paho.mqtt import _packet

    if getattr(_packet.decode_publish, "gatewatch_fast", False):
        return
    paho_decode = _packet.decode_publish
    v5 = MQTTProtocolVersion.MQTTv5

    def decode_publish(header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion) -> _packet.PublishPacket:
        if protocol == v5:
            try:
                topic_end = 2 + ((packet[0] << 8) | packet[1])
                qos = (header & 0x06) >> 1
                at = topic_end + 2 if qos else topic_end
                if packet[at] == 0 and topic_end <= len(packet):  # property length 0 (one byte)
                    return _packet.PublishPacket(
                        dup=bool(header & 0x08), qos=qos, retain=bool(header & 0x01),
                        topic=bytes(packet[2:topic_end]), mid=(packet[topic_end] << 8) | packet[topic_end + 1]
                        if qos else 0, properties=None, payload=bytes(packet[at + 1:]),
                    )
            except IndexError:
                pass  # too short: paho's decoder says how
        return paho_decode(header, packet, protocol)

    decode_publish.gatewatch_fast = True  # type: ignore[attr-defined]
    decode_publish.paho = paho_decode  # type: ignore[attr-defined]
    _packet.decode_publish = decode_publish

    # A PUBACK of a delivered message is its packet id, and at most a reason code that is not a
    # failure (the broker leaves out empty properties), yet paho builds a ReasonCode and a Properties
    # for each: every record a unit sends and every dead letter the server publishes pays for them.
    # Such a PUBACK gets a shared ReasonCode and a shared empty Properties, which on_publish callbacks
    # only read.
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    paho_puback = _packet.decode_puback
    no_properties = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
    #: success, and "no matching subscribers" (the broker's word for a dead letter nobody reads yet)
    plain = {code: ReasonCode(PacketTypes.PUBACK, identifier=code) for code in (0x00, 0x10)}

    def decode_puback(header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion) -> _packet.PubackPacket:
        if len(packet) == 2 or (len(packet) == 3 and packet[2] in plain and protocol == v5):
            return _packet.PubackPacket(mid=(packet[0] << 8) | packet[1], reason=plain[packet[2] if len(packet) == 3
                                        else 0], properties=no_properties)
        return paho_puback(header, packet, protocol)

    decode_puback.paho = paho_puback  # type: ignore[attr-defined]
    _packet.decode_puback = decode_puback


_fast_publish_decode()


def make_client(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    tls_ca_file: Path | None = None,
    tls_cert_file: Path | None = None,
    tls_key_file: Path | None = None,
    manual_ack: bool = False,
    max_inflight: int | None = None,
    reconnect_s: tuple[float, float] | None = None,
) -> mqtt.Client:
    """A paho client, not yet connected.

    `manual_ack`: PUBACK only when the caller calls `client.ack` (the server acknowledges a message
    once it is durable). `reconnect_s`: the first and the longest reconnect delay.
    """
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    if username is not None:
        client.username_pw_set(username, password)
    if tls_ca_file is not None:
        try:
            client.tls_set(
                ca_certs=str(tls_ca_file),
                certfile=str(tls_cert_file) if tls_cert_file else None,
                keyfile=str(tls_key_file) if tls_key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise MqttError(f"mqtt TLS set-up failed (tls_ca_file {tls_ca_file}): {exc}") from None
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)
    if reconnect_s is not None:
        # paho annotates these as int but does float arithmetic; sub-second delays are useful
        client.reconnect_delay_set(cast(int, reconnect_s[0]), cast(int, reconnect_s[1]))
    return client


def client_for(
    cfg: MqttConnection,
    client_id: str,
    *,
    password: str | None,
    manual_ack: bool = False,
    max_inflight: int | None = None,
    reconnect_s: tuple[float, float] | None = None,
) -> mqtt.Client:
    """`make_client` with a config's credentials and TLS files. The caller reads the password
    (`cfg.password(required=...)`): a server needs it to start, an edge unit counts without it."""
    return make_client(
        client_id,
        username=cfg.username,
        password=password,
        tls_ca_file=cfg.tls_ca_file,
        tls_cert_file=cfg.tls_cert_file,
        tls_key_file=cfg.tls_key_file,
        manual_ack=manual_ack,
        max_inflight=max_inflight,
        reconnect_s=reconnect_s,
    )
