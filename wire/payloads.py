"""Payload models for every MQTT message, with the `schema` version each one carries.

A window record is keyed by (unit, lane, window_start): re-sending it is harmless because the
server writes it to the same InfluxDB point. Every unit message carries a per-unit `seq`, so a
subscriber can see gaps (as Sparkplug's `seq` does) without trusting the transport.

End-to-end acknowledgement: a broker's PUBACK proves nothing once the broker crashes, so the
server tells each unit, retained on `<gate>/<unit>/stored`, through which `seq` its messages are
durable (`StoredMessage`); the unit deletes an outbox row only then. The unit's `health` says the
oldest seq it still holds (`outbox_first_seq`): a seq below it that the server never received is
lost for good, and the server counts it as a gap instead of waiting for it.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from wire.errors import WireError
from wire.topics import ID_PATTERN, Topic, TopicKind

SCHEMA_VERSION: Final = 1  # Final: mypy reads it as Literal[1], the type of the schema field
SUPPORTED_SCHEMAS = frozenset({SCHEMA_VERSION})
#: MQTT allows 256 MB; nothing legitimate we send comes near 64 kB.
MAX_PAYLOAD_BYTES = 64 * 1024

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Count = Annotated[int, Field(ge=0, le=100_000)]
#: totals over a unit's life (outbox depth, drops): large, but still bounded against garbage
Total = Annotated[int, Field(ge=0, le=10**12)]
Seconds = Annotated[float, Field(ge=0, le=30 * 24 * 3600)]
#: a per-unit sequence number: the database stores it as a signed 64-bit integer.
Seq = Annotated[int, Field(ge=0, le=2**63 - 1)]


class VehicleClass(StrEnum):
    """The gate's own classes; COCO labels map onto these in the unit config."""

    TRUCK = "truck"
    BUS = "bus"
    CAR = "car"
    MOTORBIKE = "motorbike"


class CameraState(StrEnum):
    UP = "up"
    DOWN = "down"
    RECONNECTING = "reconnecting"


class UnitState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class AlertLevel(StrEnum):
    """Vietnam's single-window colour scale, mildest first."""

    GREEN = "green"
    YELLOW = "yellow"
    ORANGE = "orange"
    RED = "red"

    @property
    def rank(self) -> int:
        return list(AlertLevel).index(self)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _exact_int(value: Any) -> Any:
    """JSON `true` or `1.0` is not schema 1 (a Literal[1] alone would take both)."""
    if type(value) is not int:
        raise ValueError(f"schema must be an integer, not {type(value).__name__}")
    return value


class _Versioned(_Model):
    schema_version: Annotated[Literal[1], BeforeValidator(_exact_int)] = Field(
        SCHEMA_VERSION, alias="schema", description="payload schema version"
    )


class QueueStats(_Model):
    """Queue state of one lane over one window."""

    length_max: Count = Field(0, description="most vehicles seen at once in the queue zone")
    length_mean: float = Field(0.0, ge=0, le=100_000, description="time-weighted mean vehicles in the zone")
    stationary_max: Count = Field(0, description="most vehicles standing still at once in the zone")
    waits_n: Count = Field(0, description="vehicles that left the queue over the line in this window")
    wait_p50_s: Seconds | None = Field(None, description="median wait from entering the zone to crossing")
    wait_p90_s: Seconds | None = None
    wait_max_s: Seconds | None = None
    clearance_per_min: float | None = Field(
        None, ge=0, le=10_000, description="crossings per minute (smoothed)"
    )
    expected_wait_s: Seconds | None = Field(None, description="queue length / clearance rate")


class WindowRecord(_Model):
    """Per-lane aggregate over one wall-clock-aligned window: what the edge pipeline produces."""

    gate: Id
    unit: Id
    lane: Id
    window_start: AwareDatetime
    window_s: float = Field(gt=0, le=3600)
    counts: dict[VehicleClass, dict[Id, Count]] = Field(
        default_factory=dict, description="crossings by class, then by direction name"
    )
    queue: QueueStats = Field(default_factory=QueueStats)
    frames: Count = Field(0, description="frames processed in the window")
    camera_up: float = Field(1.0, ge=0, le=1, description="share of the window the camera delivered frames")
    loop_count: Count | None = Field(
        None, description="crossings counted by the lane's loop sensor, if fitted"
    )

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.unit, self.lane, self.window_start)

    def total(self, direction: str | None = None) -> int:
        # the server asks this of every record several times: sums over dict views, not a generator
        if direction is None:
            return sum(sum(dirs.values()) for dirs in self.counts.values())
        return sum(dirs.get(direction, 0) for dirs in self.counts.values())


class _UnitMessage(_Versioned):
    gate: Id
    unit: Id
    seq: Seq = Field(description="per-unit sequence number, +1 per message")


class CountsMessage(WindowRecord, _UnitMessage):
    kind: Literal["counts"] = "counts"

    @classmethod
    def from_record(cls, record: WindowRecord, seq: int) -> CountsMessage:
        return cls(seq=seq, **record.model_dump())

    def record(self) -> WindowRecord:
        return WindowRecord(**self.model_dump(exclude={"kind", "seq", "schema_version"}))


class CrossingEvent(_Model):
    lane: Id
    at: AwareDatetime
    vehicle_class: VehicleClass
    direction: Id
    track_id: int = Field(ge=0, description="tracker id: a field, never an InfluxDB tag")
    wait_s: Seconds | None = None


class EventMessage(_UnitMessage):
    kind: Literal["events"] = "events"
    event: CrossingEvent


class StatusMessage(_UnitMessage):
    kind: Literal["status"] = "status"
    state: UnitState
    at: AwareDatetime
    version: str = Field(max_length=40)
    config_hash: str = Field(max_length=64)


class HealthMessage(_UnitMessage):
    kind: Literal["health"] = "health"
    at: AwareDatetime
    interval_s: float = Field(gt=0, le=3600)
    fps: float = Field(ge=0, le=1000)
    inference_ms: float = Field(ge=0, le=60_000)
    camera: CameraState
    outbox_depth: Total
    outbox_oldest_s: float | None = Field(None, ge=0, le=20 * 365 * 86400)
    dropped_records: Total = Field(0, description="records dropped because the outbox hit its disk bound")
    outbox_first_seq: Seq | None = Field(
        None,
        description="the oldest seq still in the outbox, or the next seq if it is empty: a seq below it "
        "that the server never received is lost for good (None: a unit too old to say)",
    )
    outbox_lost: Total = Field(
        0,
        description="messages the unit lost to storage trouble: writes the disk refused, and the rows of a "
        "damaged outbox that could not be read back (an upper bound; the server's gap count is exact)",
    )
    cpu_temp_c: float | None = Field(None, ge=-40, le=150)
    throttled: str | None = Field(None, max_length=20, description="vcgencmd get_throttled, where present")
    mem_mb: float = Field(ge=0)
    uptime_s: float = Field(ge=0, le=20 * 365 * 86400)


class ActiveAlert(_Model):
    rule: Id
    level: AlertLevel
    since: AwareDatetime
    detail: str = Field("", max_length=200)


class AlertMessage(_Versioned):
    """Retained state of one lane's alerts, published by the server on `<gate>/<lane>/alert`.

    It is the whole state, not a delta, so a unit that reconnects reads the truth from the
    retained copy. `valid_s` lets the lane's signal show "unknown" once the server goes quiet.
    """

    kind: Literal["alert"] = "alert"
    gate: Id
    lane: Id
    at: AwareDatetime
    valid_s: float = Field(gt=0, le=86_400)
    level: AlertLevel
    active: list[ActiveAlert] = Field(default_factory=list, max_length=20)
    expected_wait_s: Seconds | None = None


class StoredMessage(_Versioned):
    """Retained, published by the server on `<gate>/<unit>/stored`: how far this unit's messages
    are durable (in the database, or in the server's fsynced spool).

    The unit deletes an outbox row only once `through_seq` covers it: a broker PUBACK alone is
    lost with the broker's memory if it crashes before its next save.
    """

    kind: Literal["stored"] = "stored"
    gate: Id
    unit: Id
    through_seq: Seq = Field(description="every message of this unit with seq <= through_seq is durable")
    at: AwareDatetime = Field(description="server time of this statement")
    gaps: Total = Field(0, description="seqs the server gave up on: below the unit's outbox_first_seq, never received")
    resets: Total = Field(0, description="times this unit's seq went backwards (a re-imaged unit, a lost state folder)")


class DeadLetter(_Versioned):
    kind: Literal["deadletter"] = "deadletter"
    topic: str = Field(max_length=512)
    reason: str = Field(max_length=40)
    detail: str = Field(max_length=1000)
    payload: str = Field(
        max_length=2048, description="the rejected payload, truncated, undecodable bytes escaped"
    )
    at: AwareDatetime


Message = Annotated[
    CountsMessage | EventMessage | StatusMessage | HealthMessage | AlertMessage | StoredMessage,
    Field(discriminator="kind"),
]
_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json(by_alias=True).encode()


def decode_message(topic: str, payload: bytes, max_bytes: int = MAX_PAYLOAD_BYTES) -> Message:
    """Validate `payload` received on `topic`, or raise `WireError` with a stable reason code.

    Beyond the model, the payload's identity must match its topic: the broker's ACLs vouch for
    the topic, not for what a unit writes inside the payload.
    """
    parsed = Topic.parse(topic)
    if len(payload) > max_bytes:
        raise WireError("oversized", f"{len(payload)} bytes > {max_bytes}")
    try:
        # the common case, valid input, parsed and validated in one pass by pydantic-core (about 3x
        # faster than json.loads + validate_python); whatever it refuses takes the step-by-step path
        # below, which says exactly why
        message: Message = _MESSAGE.validate_json(payload)
    except ValidationError:
        pass
    else:
        if "schema_version" in message.model_fields_set:  # present, not the model's default
            return _matching_topic(message, parsed)
    try:
        data: Any = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError("bad_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise WireError("bad_json", f"expected an object, got {type(data).__name__}")
    if "schema" not in data:
        raise WireError("missing_schema", "no 'schema' field")
    # type check first: a list or object here is unhashable, and True == 1 in a set
    if type(data["schema"]) is not int or data["schema"] not in SUPPORTED_SCHEMAS:
        raise WireError("unknown_schema", f"schema {data['schema']!r} not in {sorted(SUPPORTED_SCHEMAS)}")
    if data.get("kind") != parsed.kind.value:
        raise WireError("topic_mismatch", f"kind {data.get('kind')!r} published on a {parsed.kind} topic")
    try:
        message = _MESSAGE.validate_python(data)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise WireError("invalid", errs[:900]) from None
    return _matching_topic(message, parsed)


def _matching_topic(message: Message, parsed: Topic) -> Message:
    """The payload's kind and identity must be its topic's."""
    if message.kind != parsed.kind.value:
        raise WireError("topic_mismatch", f"kind {message.kind!r} published on a {parsed.kind} topic")
    scope = message.lane if isinstance(message, AlertMessage) else message.unit
    if (message.gate, scope) != (parsed.gate, parsed.scope):
        raise WireError(
            "topic_mismatch", f"payload says {message.gate}/{scope}, topic says {parsed.gate}/{parsed.scope}"
        )
    return message


def topic_for(
    message: CountsMessage | EventMessage | StatusMessage | HealthMessage | AlertMessage | StoredMessage,
) -> str:
    if isinstance(message, AlertMessage):
        return str(Topic.alert(message.gate, message.lane))
    if isinstance(message, StoredMessage):
        return str(Topic.stored(message.gate, message.unit))
    return str(Topic.unit(message.gate, message.unit, TopicKind(message.kind)))
