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
