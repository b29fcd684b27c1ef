"""What a unit publishes for Home Assistant: discovery topic names and the per-lane state payload.

Home Assistant finds MQTT entities from retained configs on
`<prefix>/<component>/<node_id>/<object_id>/config` (prefix `homeassistant` by default). The
broker's ACL binds a unit to its own node id (`<prefix>/+/<node_id>/+/config`), so the node id
must name exactly one (gate, unit) and no two units may share one: Home Assistant allows only
`[a-zA-Z0-9_-]` there, and our ids are lowercase `[a-z0-9_-]`, so `<gate>_AT_<unit>` is
one-to-one (the only upper-case letters mark the join; `<gate>_<unit>` would not be: gate `a_b`
unit `c` and gate `a` unit `b_c` would share `a_b_c`).

A lane's measurements travel on a dedicated retained state topic, `gatewatch/v1/<gate>/<unit>/
lane/<lane>`, rather than as templates over the `counts` topic: every lane of a unit publishes its
records on that one topic, so a template for lane A would also see lane B's records, and a
running total (Home Assistant's `total_increasing`) is not in a window record at all. Retained,
so Home Assistant shows the last value after a restart. Six levels deep, so the server's
subscription (`gatewatch/v1/+/+/+`) never sees it. The lane's alert state, the camera and the
unit's availability are read with templates from topics that already carry one scope each: the
server's retained `<gate>/<lane>/alert`, the unit's `health` and its retained `status` (and Last
Will).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from wire.payloads import SCHEMA_VERSION, Count, Id, Total, VehicleClass
from wire.topics import ID_PATTERN, PREFIX, check_id

#: Home Assistant's own rule for the node and object levels of a discovery topic
HA_ID_PATTERN = r"^[a-zA-Z0-9_-]+$"
_HA_ID = re.compile(HA_ID_PATTERN)
#: the join of gate and unit in a node id: upper case never occurs in our ids
NODE_JOIN = "_AT_"


def node_id(gate: str, unit: str) -> str:
    """The discovery node id of a unit: one per (gate, unit), and no other unit's."""
    return f"{check_id(gate, 'gate')}{NODE_JOIN}{check_id(unit, 'unit')}"


def parse_node_id(node: str) -> tuple[str, str] | None:
    """(gate, unit) of a node id made by `node_id`, or None for anyone else's."""
    gate, sep, unit = node.partition(NODE_JOIN)
    if not sep or not re.match(ID_PATTERN, gate) or not re.match(ID_PATTERN, unit):
        return None
    return gate, unit


def lane_object_id(entity: str, lane: str) -> str:
    """`<entity>-<lane>`: entity names hold no hyphen, so the first one splits the two apart."""
    if "-" in entity:
        raise ValueError(f"entity name {entity!r} must not contain '-'")
    return f"{entity}-{check_id(lane, 'lane')}"


def object_lane(object_id: str) -> str | None:
    """The lane of a lane entity's object id, None for a unit entity."""
    _, sep, lane = object_id.partition("-")
    return lane if sep and re.match(ID_PATTERN, lane) else None


def discovery_topic(prefix: str, component: str, node: str, object_id: str) -> str:
    for level, what in ((prefix, "discovery prefix"), (component, "component"), (node, "node id"),
                        (object_id, "object id")):
        if not _HA_ID.match(level):
            raise ValueError(f"{what} {level!r} must match {HA_ID_PATTERN}")
    return f"{prefix}/{component}/{node}/{object_id}/config"


def discovery_filter(prefix: str, node: str) -> str:
    """Every discovery config of one node, whatever its component and object (subscribe and ACL)."""
    return f"{prefix}/+/{node}/+/config"


def lane_state_topic(gate: str, unit: str, lane: str) -> str:
    return f"{PREFIX}/{check_id(gate, 'gate')}/{check_id(unit, 'unit')}/lane/{check_id(lane, 'lane')}"


def lane_state_filter(gate: str, unit: str) -> str:
    return f"{PREFIX}/{check_id(gate, 'gate')}/{check_id(unit, 'unit')}/lane/+"


def per_class(values: dict[VehicleClass, int] | None = None) -> dict[VehicleClass, int]:
    """Every class, zero where absent: a sensor needs a number, not a missing key."""
    values = values or {}
    return {cls: int(values.get(cls, 0)) for cls in VehicleClass}


class LaneState(BaseModel):
    """A lane's latest window and running totals, retained on `lane_state_topic`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, alias="schema", description="payload schema version")
    kind: Literal["lane_state"] = "lane_state"
    gate: Id
    unit: Id
    lane: Id
    window_start: AwareDatetime = Field(description="start of the window the figures come from")
    window_s: float = Field(gt=0, le=3600)
    queue: Count = Field(description="most vehicles seen at once in the queue zone during the window")
    stationary: Count = Field(description="most vehicles standing still at once in the zone")
    expected_wait_s: float | None = Field(None, ge=0, description="queue / clearance rate; null when unknown")
    window: dict[VehicleClass, Count] = Field(description="crossings in the window, every class, both directions")
    total: dict[VehicleClass, Total] = Field(description="crossings since the unit started, every class")
    camera_up: float = Field(ge=0, le=1, description="share of the window the camera delivered frames")
