"""Home Assistant MQTT discovery: the unit announces its lanes as entities, and keeps them current.

Why the unit, not the server: the unit is the device Home Assistant should show. Its config is
the one place that knows which lanes exist now (so it can remove a lane that left), its retained
`status` and Last Will are exactly Home Assistant's availability, and it needs nothing from the
server to do it: a gate with a broker, a unit and Home Assistant works without the central
server. The broker's ACL binds each unit to its own node id (wire.homeassistant), so a unit can
announce and delete only its own entities.

What it publishes, all retained, QoS 1:

- one discovery config per entity on `<prefix>/<component>/<gate>_AT_<unit>/<object>/config`:
  per lane its queue length and expected wait (`measurement`, in vehicles and seconds), crossings
  per class in the last window (`measurement`) and since the unit started (`total_increasing`: a
  restart starts a new cycle, which Home Assistant expects of that class), and the lane's alert
  state; per unit its camera (up/down, from health). Each has a `unique_id`, the unit's `device`
  block and availability from the unit's `status`;
- each lane's state on `gatewatch/v1/<gate>/<unit>/lane/<lane>` after every window.

The configs go out on every connect and again when Home Assistant announces `online` on its birth
topic (it forgets entities that were announced while it was down, unless they were retained and
it subscribed since; re-sending is what its docs ask). Configs and lane states the unit finds on
the broker under its own node that its config no longer has (a lane removed, a class renamed) are
deleted with an empty retained payload, which is how Home Assistant removes an entity.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from edge import __version__
from edge.config import UnitConfig
from wire.homeassistant import (
    LaneState,
    discovery_filter,
    discovery_topic,
    lane_object_id,
    lane_state_filter,
    lane_state_topic,
    node_id,
    object_lane,
    per_class,
)
from wire.payloads import AlertLevel, VehicleClass, WindowRecord, encode
from wire.topics import Topic, TopicKind

log = logging.getLogger(__name__)

MANUFACTURER = "gatewatch"
#: Home Assistant's payloads for a binary sensor (its defaults, written out for readers)
ON, OFF = "ON", "OFF"


class Publishes(Protocol):
    """The part of a paho client discovery uses (a fake in unit tests)."""

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Any: ...


class Discovery:
    """The unit's discovery configs and lane states; paho calls come from the publisher's hooks."""

    def __init__(self, cfg: UnitConfig, *, version: str = __version__) -> None:
        self.cfg = cfg
        self.ha = cfg.homeassistant
        self.node = node_id(cfg.gate, cfg.unit)
        self.version = version
        self.lanes = [lane.id for lane in cfg.lanes]
        self._status_topic = str(Topic.unit(cfg.gate, cfg.unit, TopicKind.STATUS))
        self._health_topic = str(Topic.unit(cfg.gate, cfg.unit, TopicKind.HEALTH))
        self._lane_states = {lane: lane_state_topic(cfg.gate, cfg.unit, lane) for lane in self.lanes}
        self.configs: dict[str, bytes] = {topic: json.dumps(payload).encode() for topic, payload in self._build()}
        self._lock = threading.Lock()
        self._totals: dict[str, dict[VehicleClass, int]] = {lane: per_class() for lane in self.lanes}
        self._latest: dict[str, bytes] = {}
        self.announcements = 0
        self.removed: list[str] = []

    # -- what Home Assistant reads ---------------------------------------------------------------

    def _device(self) -> dict[str, Any]:
        return {
            "identifiers": [f"gatewatch/{self.cfg.gate}/{self.cfg.unit}"],
            "name": f"gatewatch {self.cfg.gate}/{self.cfg.unit}",
            "manufacturer": MANUFACTURER,
            "model": "edge unit",
            "sw_version": self.version,
        }

    def _entity(self, component: str, object_id: str, name: str, state_topic: str, value_template: str,
                **extra: Any) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {
            "name": name,
            "unique_id": f"gatewatch/{self.cfg.gate}/{self.cfg.unit}/{object_id}",
            "state_topic": state_topic,
            "value_template": value_template,
            "availability": [{
                "topic": self._status_topic,
                "value_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }],
            "device": self._device(),
            "origin": {"name": "gatewatch", "sw_version": self.version},
            "qos": 1,
            **extra,
        }
        return discovery_topic(self.ha.discovery_prefix, component, self.node, object_id), payload

    def _build(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for lane in self.lanes:
            state = self._lane_states[lane]
            out.append(self._entity(
                "sensor", lane_object_id("queue", lane), f"{lane} queue length", state, "{{ value_json.queue }}",
                unit_of_measurement="vehicles", state_class="measurement", icon="mdi:car-multiple",
            ))
            out.append(self._entity(
                "sensor", lane_object_id("wait", lane), f"{lane} expected wait", state,
                "{{ value_json.expected_wait_s }}",
                device_class="duration", unit_of_measurement="s", state_class="measurement",
            ))
            for cls in VehicleClass:
                out.append(self._entity(
                    "sensor", lane_object_id(f"{cls.value}_window", lane), f"{lane} {cls.value}s last window",
                    state, f"{{{{ value_json.window.{cls.value} }}}}",
                    unit_of_measurement="vehicles", state_class="measurement", icon="mdi:counter",
                ))
                out.append(self._entity(
                    "sensor", lane_object_id(f"{cls.value}_total", lane), f"{lane} {cls.value}s total",
                    state, f"{{{{ value_json.total.{cls.value} }}}}",
                    unit_of_measurement="vehicles", state_class="total_increasing", icon="mdi:counter",
                ))
            alert = str(Topic.alert(self.cfg.gate, lane))
            out.append(self._entity(
                "sensor", lane_object_id("alert", lane), f"{lane} alert", alert, "{{ value_json.level }}",
                device_class="enum", options=[level.value for level in AlertLevel],
                json_attributes_topic=alert,
                json_attributes_template="{{ {'active': value_json.active | map(attribute='rule') | list, "
                                         "'expected_wait_s': value_json.expected_wait_s} | tojson }}",
                # the server re-sends the state every alerts.valid_s / 2; older is no longer vouched for
                expire_after=round(self.cfg.gpio.alert_stale_s),
            ))
        out.append(self._entity(
            "binary_sensor", "camera", "camera", self._health_topic,
            f"{{{{ '{ON}' if value_json.camera == 'up' else '{OFF}' }}}}",
            device_class="connectivity", payload_on=ON, payload_off=OFF,
            expire_after=round(3 * self.cfg.health.interval_s),
        ))
        return out

    def subscriptions(self) -> list[str]:
        """Home Assistant's birth topic, and our own node's configs and lane states (to find strays)."""
        return [self.ha.status_topic, discovery_filter(self.ha.discovery_prefix, self.node),
                lane_state_filter(self.cfg.gate, self.cfg.unit)]

    # -- hooks (paho's network thread, except on_record) -----------------------------------------

    def on_connect(self, client: Publishes) -> None:
        self.announce(client)
        with self._lock:
            latest = dict(self._latest)
        for lane, payload in latest.items():
            client.publish(self._lane_states[lane], payload, qos=1, retain=True)

    def announce(self, client: Publishes) -> None:
        for topic, payload in self.configs.items():
            client.publish(topic, payload, qos=1, retain=True)
        self.announcements += 1
        log.info("home assistant: announced %d entities of node %s", len(self.configs), self.node)

    def on_message(self, client: Publishes, topic: str, payload: bytes) -> bool:
        """Handle Home Assistant's birth and our own retained strays; False if the topic is not ours."""
        if topic == self.ha.status_topic:
            if payload.strip() == b"online":
                log.info("home assistant came online; announcing again")
                self.announce(client)
            return True
        parts = topic.split("/")
        if topic.startswith(f"{self.ha.discovery_prefix}/") and len(parts) == 5 and parts[2] == self.node:
            if payload and topic not in self.configs:
                self._remove(client, topic)
                lane = object_lane(parts[3])
                if lane is not None and lane not in self._lane_states:
                    self._remove(client, lane_state_topic(self.cfg.gate, self.cfg.unit, lane))
            return True
        if topic.startswith(lane_state_filter(self.cfg.gate, self.cfg.unit)[:-1]):
            if payload and parts[-1] not in self._lane_states:
                self._remove(client, topic)
            return True
        return False

    def _remove(self, client: Publishes, topic: str) -> None:
        log.info("home assistant: removing %s (no longer in this unit's config)", topic)
        self.removed.append(topic)
        client.publish(topic, b"", qos=1, retain=True)

    def on_record(self, client: Publishes, record: WindowRecord, *, connected: bool) -> None:
        """A closed window: the lane's new state, retained. Sent only while connected (paho would
        otherwise queue every window of an outage); the newest goes out on the next connect."""
        if record.lane not in self._lane_states:
            return
        payload = encode(self.lane_state(record))
        with self._lock:
            self._latest[record.lane] = payload
        if connected:
            client.publish(self._lane_states[record.lane], payload, qos=1, retain=True)

    def lane_state(self, record: WindowRecord) -> LaneState:
        """Add the record to its lane's running totals and describe the lane now."""
        window = per_class(_by_class(record.counts))
        with self._lock:
            totals = self._totals[record.lane]
            for cls, n in window.items():
                totals[cls] += n
            total = dict(totals)
        return LaneState(
            gate=record.gate, unit=record.unit, lane=record.lane, window_start=record.window_start,
            window_s=record.window_s, queue=record.queue.length_max, stationary=record.queue.stationary_max,
            expected_wait_s=record.queue.expected_wait_s, window=window, total=total, camera_up=record.camera_up,
        )


def _by_class(counts: Mapping[VehicleClass, Mapping[str, int]]) -> dict[VehicleClass, int]:
    return {cls: sum(dirs.values()) for cls, dirs in counts.items()}
