"""Server configuration: one YAML file in the project's one config style (common.config).

Every model forbids unknown keys, so a typo (``raise_fro_s``) is an error with its path instead
of a silently ignored setting that leaves a gate without alerts. Passwords and tokens are named
by environment variable, never written in the file, so the file can be shared and logged.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from common.config import MetricsConfig, MqttConnection, validate_config
from common.config import StrictModel as _Strict
from common.config import load_config as load_yaml_config
from server.alerts.config import AlertsConfig
from wire.payloads import MAX_PAYLOAD_BYTES
from wire.topics import ALL_UNITS, ID_PATTERN


class MqttConfig(MqttConnection):
    """The server's broker session: the shared connection settings plus subscription and flow control."""

    client_id: str = Field(
        "gatewatch-server",
        min_length=1,
        max_length=64,
        title="Client id",
        description="fixed, so the broker keeps this server's persistent session across restarts",
    )
    session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=0xFFFFFFFF,
        title="Session expiry (s)",
        description="how long the broker queues QoS 1 messages for this server while it is down",
    )
    topic: str = Field(ALL_UNITS, title="Subscription", description="topic filter for unit messages")
    shared_group: str | None = Field(
        None,
        pattern=ID_PATTERN,
        title="Shared subscription group",
        description="subscribe as $share/<group>/<topic> so several servers split the load (MQTT v5)",
    )
    receive_maximum: int = Field(
        1000,
        ge=1,
        le=65535,
        title="Receive maximum",
        description="unacknowledged messages the broker may have in flight to us; bounds a batch",
    )
    reconnect_min_s: float = Field(
        0.5, gt=0, le=60, title="Reconnect delay min (s)", description="first reconnect delay; doubles per failure"
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, le=600, title="Reconnect delay max (s)", description="longest reconnect delay"
    )

    @property
    def subscription(self) -> str:
        return f"$share/{self.shared_group}/{self.topic}" if self.shared_group else self.topic


class InfluxApi(StrEnum):
    V1 = "v1"
    V2 = "v2"


class InfluxConfig(_Strict):
    api: InfluxApi = Field(
        InfluxApi.V1,
        title="Write API",
        description="v1: /write of InfluxDB 1.6/1.7 (Debian); v2: InfluxDB 2.x/3.x, 1.8+ compat, VictoriaMetrics",
    )
    url: str = Field(
        "http://127.0.0.1:8086",
        pattern=r"^https?://",
        title="Database URL",
        description="base URL of the database's HTTP API",
    )
    database: str = Field("gatewatch", min_length=1, title="Database (v1)", description="v1 database written to")
    retention_policy: str | None = Field(
        None, title="Retention policy (v1)", description="v1 retention policy; the database default when unset"
    )
    create_database: bool = Field(
        True,
        title="Create database (v1)",
        description="run CREATE DATABASE (idempotent) when first reached",
    )
    username: str | None = Field(
        None, title="Username (v1)", description="v1 user; the password comes from password_env"
    )
    password_env: str | None = Field(
        None, title="Password env var (v1)", description="environment variable with the v1 password"
    )
    org: str = Field("gatewatch", title="Organisation (v2)", description="v2 organisation (ignored by VictoriaMetrics)")
    bucket: str = Field("gatewatch", title="Bucket (v2)", description="v2 bucket written to")
    token_env: str | None = Field(
        None,
        title="Token env var (v2)",
        description="environment variable with the API token",
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        title="Request timeout (s)",
        description="per-request timeout; a slower database counts as down and batches spool",
    )
    batch_size: int = Field(
        500,
        ge=1,
        le=50_000,
        title="Batch size (messages)",
        description="messages written per request; keep below mqtt.receive_maximum so batches fill",
    )
    flush_interval_s: float = Field(
        0.2,
        gt=0,
        le=60,
        title="Flush interval (s)",
        description="longest a message waits for its batch to fill; adds to end-to-end latency",
    )


class SpoolConfig(_Strict):
    path: Path = Field(
        Path("/var/lib/gatewatch/server-spool.sqlite3"),
        title="Spool file",
        description="SQLite file that holds batches while the database is down",
    )
    replay_batch: int = Field(
        5000, ge=1, le=100_000, title="Replay batch (points)", description="points per write when replaying the spool"
    )
    retry_min_s: float = Field(
        0.5,
        gt=0,
        le=60,
        title="Retry delay min (s)",
        description="first delay before retrying a down database; doubles per failure",
    )
    retry_max_s: float = Field(
        10.0, gt=0, le=600, title="Retry delay max (s)", description="longest delay between retries"
    )
    max_bytes: int = Field(
        1 << 30, ge=1 << 20, title="Spool bound (bytes)",
        description="the spool's files never grow past this; a full spool holds new batches "
        "unacknowledged (the broker and the units keep them) or, with the database up, writes them directly",
    )
    reserve_bytes: int = Field(
        8 << 20, ge=0, title="Reserved headroom (bytes)",
        description="the spool stops growing while less than this is free on its filesystem: room for "
        "SQLite's own files and for whatever else shares the disk",
    )


class StoredConfig(_Strict):
    min_interval_s: float = Field(
        1.0, gt=0, le=60, title="Stored interval (s)",
        description="each unit's retained `stored` acknowledgement is published at most this often",
    )
    max_pending: int = Field(
        100_000, ge=100, le=10_000_000, title="Max pending seqs",
        description="stored seqs a unit may have above an unexplained hole before the hole is given up "
        "(counted as a gap); normally the unit's health explains holes long before",
    )


#: a unit's lanes: lane id -> the direction ids it counts
UnitLanes = dict[str, list[str]]


class ValidationConfig(_Strict):
    accept_unknown: bool = Field(
        False,
        title="Accept unknown units",
        description="accept gates and units not listed under `gates` (their lanes are learned and pinned)",
    )
    gates: dict[str, list[str] | dict[str, UnitLanes | None]] = Field(
        default_factory=dict,
        title="Known units and their lanes",
        description="gate id -> {unit id -> {lane id -> [direction ids]}}: what each unit may report on. "
        "A unit given no lanes (`hn-u2:` or the list form `gate: [u1, u2]`) has its lanes learned from its "
        "first records and pinned in `lanes_file`. A lane belongs to one unit of its gate",
    )
    lanes_file: Path | None = Field(
        None,
        title="Learned lanes file",
        description="where lanes learned from units without declared lanes are pinned, so a restart does "
        "not let another unit claim them; default: server-lanes.json beside the spool file",
    )
    max_lanes_per_unit: int = Field(
        16, ge=1, le=1000, title="Max lanes per unit",
        description="a unit whose lanes are learned may claim this many lanes, no more",
    )
    max_directions_per_lane: int = Field(
        4, ge=1, le=100, title="Max directions per lane",
        description="a lane whose directions are learned may have this many, no more (each one is a series)",
    )
    max_future_s: float = Field(
        120.0,
        ge=0,
        le=86_400,
        title="Clock skew bound (s)",
        description="reject windows or stamps further than this ahead of the server clock",
    )
    clock_tolerance_s: float = Field(
        10.0,
        ge=0,
        le=86_400,
        title="Clock tolerance for alerts (s)",
        description="a message stamped further than this ahead of the server clock is stored (up to "
        "max_future_s) but never moves alert state: one window from a clock that runs ahead would "
        "otherwise hold its lane's alerts until the real time caught up",
    )
    max_age_s: float = Field(
        89 * 86_400,
        gt=0,
        title="Oldest record (s)",
        description="reject records, events and health older than this (reason too_old) instead of "
        "letting the database drop them silently; keep it below the retention policy the server "
        "writes to (90 days in deploy/influxdb, less one shard of 1 day)",
    )
    max_payload_bytes: int = Field(
        MAX_PAYLOAD_BYTES,
        ge=256,
        le=MAX_PAYLOAD_BYTES,
        title="Max payload (bytes)",
        description="larger payloads are rejected unread",
    )
    max_vehicles_per_window: int = Field(
        5000,
        ge=1,
        le=1_000_000,
        title="Max vehicles per window",
        description="a lane cannot plausibly count more crossings than this in one window",
    )

    @model_validator(mode="after")
    def _known(self) -> ValidationConfig:
        if not self.accept_unknown and not self.gates:
            raise ValueError("list the known gates and units under `gates`, or set accept_unknown: true")
        problems = []
        for gate, units in self.gates.items():
            problems += _bad_ids([gate], "gate")
            owner: dict[str, str] = {}
            for unit, lanes in (units.items() if isinstance(units, dict) else ((u, None) for u in units)):
                problems += _bad_ids([unit], f"{gate}: unit")
                for lane, directions in (lanes or {}).items():
                    where = f"{gate}.{unit}.{lane}"
                    problems += _bad_ids([lane], f"{gate}.{unit}: lane") + _bad_ids(directions, f"{where}: direction")
                    if lane in owner:
                        problems.append(f"{gate}: lane {lane} is declared for both {owner[lane]} and {unit}; "
                                        "a lane belongs to one unit (give lanes ids unique within their gate)")
                    owner[lane] = unit
                    if not directions or len(set(directions)) != len(directions):
                        problems.append(f"{where}: list each direction once, at least one")
                    if len(directions) > self.max_directions_per_lane:
                        problems.append(f"{where}: {len(directions)} directions > max_directions_per_lane")
                if lanes is not None and len(lanes) > self.max_lanes_per_unit:
                    problems.append(f"{gate}.{unit}: {len(lanes)} lanes > max_lanes_per_unit")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def declared(self, gate: str, unit: str) -> UnitLanes | None:
        """The lanes declared for a unit, or None when they are learned (or the unit is unknown)."""
        units = self.gates.get(gate)
        return units.get(unit) if isinstance(units, dict) else None

    def known(self, gate: str) -> frozenset[str] | None:
        """The units listed for a gate, or None when the gate is not listed."""
        units = self.gates.get(gate)
        return None if units is None else frozenset(units)


def _bad_ids(values: list[str], what: str) -> list[str]:
    return [f"{what} {v!r} must match {ID_PATTERN}" for v in values if not re.match(ID_PATTERN, v)]


class HealthConfig(_Strict):
    interval_s: float = Field(
        10, gt=0, le=3600, title="Health interval (s)", description="how often server health is published and written"
    )


class DirectionRoles(_Strict):
    """Which crossing directions say a truck reached the gate, and which that it got through."""

    arriving: list[str] = Field(
        default_factory=lambda: ["in"], title="Arriving directions",
        description="direction names whose crossings count as arriving at the gate",
    )
    cleared: list[str] = Field(
        default_factory=lambda: ["out"], title="Cleared directions",
        description="direction names whose crossings count as cleared through the gate",
    )

    @model_validator(mode="after")
    def _ids(self) -> DirectionRoles:
        import re

        bad = [d for d in self.arriving + self.cleared if not re.match(ID_PATTERN, d)]
        if bad:
            raise ValueError(f"directions {bad} must match {ID_PATTERN}")
        if set(self.arriving) & set(self.cleared):
            raise ValueError(f"{sorted(set(self.arriving) & set(self.cleared))} cannot both arrive and clear")
        return self


class SummaryConfig(_Strict):
    """The cross-gate view (server/summary.py): each gate summarised, the gates ranked.

    On by default: it is made from records the server validates anyway, costs one point per gate
    per interval and a few retained messages, and answers the province's own question."""

    enabled: bool = Field(True, title="Summarise gates", description="store and publish the cross-gate view")
    interval_s: float = Field(
        60, ge=5, le=3600, title="Interval (s)", description="one summary point per gate per interval"
    )
    window_s: float = Field(
        900, ge=60, le=86_400, title="Rate window (s)", description="trailing window the hourly rates are measured over"
    )
    stale_s: float = Field(
        120, gt=0, le=86_400, title="Stale after (s)",
        description="a lane whose latest window ended longer ago leaves the queue and wait figures",
    )
    directions: DirectionRoles = Field(
        default_factory=DirectionRoles, title="Direction roles", description="for every gate unless overridden"
    )
    gates: dict[str, DirectionRoles] = Field(
        default_factory=dict, title="Direction roles per gate", description="gate id -> its own direction roles"
    )

    def roles(self, gate: str) -> DirectionRoles:
        return self.gates.get(gate, self.directions)


class ServerMetricsConfig(MetricsConfig):
    port: int = Field(9732, ge=1, le=65535, title="Listen port", description="TCP port of the server's /metrics")


class ServerConfig(_Strict):
    server_id: str = Field("server", pattern=ID_PATTERN, title="Server id", description="tag of server_health points")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, title="MQTT", description="the broker and our session")
    influx: InfluxConfig = Field(default_factory=InfluxConfig, title="InfluxDB", description="where points go")
    spool: SpoolConfig = Field(default_factory=SpoolConfig, title="Spool", description="disk buffer for outages")
    validation: ValidationConfig = Field(
        title="Validation",
        description="known gates and units, clock skew; required so that accepting "
        "any unit is a decision, not a default",
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, title="Alerts", description="rules and thresholds")
    health: HealthConfig = Field(default_factory=HealthConfig, title="Health", description="server health output")
    stored: StoredConfig = Field(
        default_factory=StoredConfig, title="Stored acknowledgements",
        description="the end-to-end acknowledgement each unit waits for before it forgets a record",
    )
    summary: SummaryConfig = Field(
        default_factory=SummaryConfig, title="Cross-gate summary", description="per-gate summaries and ranking"
    )
    metrics: ServerMetricsConfig = Field(
        default_factory=ServerMetricsConfig, title="Prometheus metrics", description="/metrics of the server"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", title="Log level", description="log verbosity; secrets are never logged at any level"
    )

    @model_validator(mode="after")
    def _one_server_per_unit_stream(self) -> ServerConfig:
        if self.mqtt.shared_group is not None:
            # a shared subscription deals each unit's messages out to several servers: none of them
            # sees a unit's whole seq stream, so none can say through which seq it is stored
            raise ValueError(
                "mqtt.shared_group is no longer supported: the end-to-end acknowledgement and the alert state "
                "need every message of a unit in one server. To share the load, give each server its own "
                "gates (mqtt.topic: gatewatch/v1/<gate>/+/+), client id and spool"
            )
        return self

    @property
    def lanes_file(self) -> Path:
        return self.validation.lanes_file or self.spool.path.with_name("server-lanes.json")


def parse_config(raw: Any, source: str | None = None) -> ServerConfig:
    return validate_config(ServerConfig, raw, source)


def load_config(path: Path) -> ServerConfig:
    return load_yaml_config(ServerConfig, path)
