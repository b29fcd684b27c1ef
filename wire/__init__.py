"""The one definition of what travels over MQTT between gatewatch edge units and the server.

Both `edge` and `server` import this package; neither imports the other. Keeping the contract
in one small place means a schema change is a single diff that both sides see at once.
"""

from wire.errors import WireError
from wire.payloads import (
    SCHEMA_VERSION,
    ActiveAlert,
    AlertLevel,
    AlertMessage,
    CameraState,
    CountsMessage,
    CrossingEvent,
    DeadLetter,
    EventMessage,
    HealthMessage,
    Message,
    QueueStats,
    StatusMessage,
    StoredMessage,
    UnitState,
    VehicleClass,
    WindowRecord,
    decode_message,
    encode,
    topic_for,
)
from wire.topics import Topic, TopicKind

__all__ = [
    "SCHEMA_VERSION",
    "ActiveAlert",
    "AlertLevel",
    "AlertMessage",
    "CameraState",
    "CountsMessage",
    "CrossingEvent",
    "DeadLetter",
    "EventMessage",
    "HealthMessage",
    "Message",
    "QueueStats",
    "StatusMessage",
    "StoredMessage",
    "Topic",
    "TopicKind",
    "UnitState",
    "VehicleClass",
    "WindowRecord",
    "WireError",
    "decode_message",
    "encode",
    "topic_for",
]
