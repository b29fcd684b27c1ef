"""Home Assistant discovery from a real edge process (the service wiring around a scripted pipeline)
on a real mosquitto: retained, well-formed configs; announced again on Home Assistant's birth; lane
states carrying the records the unit sent; entities of a removed lane deleted.
(The same with the real model on a real clip: tests/e2e/test_integrations.py.)"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

from tests.fixtures.mosquitto import Broker
from tests.fixtures.procs import wait_for
from tests.runtime.helpers import GATE, UNIT, Subscriber, make_records
from tests.runtime.test_process import spawn, write_config
from tests.server.helpers import Publisher
from wire.homeassistant import LaneState
from wire.payloads import StatusMessage, UnitState, VehicleClass

NODE = f"{GATE}_AT_{UNIT}"
ENTITIES_PER_LANE = 3 + 2 * len(VehicleClass)
TOPIC = re.compile(r"^homeassistant/(sensor|binary_sensor)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")
#: what Home Assistant requires of an entity we announce (besides its name)
REQUIRED = {"unique_id", "device", "state_topic", "availability"}


def retained(port: int, topic: str, settle_s: float = 1.0) -> dict[str, bytes]:
    """What the broker holds retained under `topic`, as a newcomer (Home Assistant starting) sees it."""
    sub = Subscriber(port, topic, client_id=f"newcomer-{time.monotonic_ns()}")
    try:
        time.sleep(settle_s)
        return {t: p for t, p, r in sub.messages if r and p}
    finally:
        sub.close()


def ha_config(tmp: Path, port: int, lanes: int = 2) -> Path:
    return write_config(tmp, port, lanes=lanes, homeassistant={"enabled": True}, health={"interval_s": 1.0})


def test_configs_retained_well_formed_republished_on_birth_and_states_match(mosquitto: Broker, tmp_path: Path) -> None:
    config = ha_config(tmp_path, mosquitto.port)
    live = Subscriber(mosquitto.port, "homeassistant/#", client_id="ha-live")
    log = tmp_path / "edge.log"
    proc = spawn(config, 0, 3, 0.05, 60, log)  # 3 windows of 2 lanes, then a live camera's wait
    try:
        lanes = [f"gatewatch/v1/{GATE}/{UNIT}/lane/l{i}" for i in (1, 2)]
        last = make_records(3)[-1].window_start

        def third_window() -> bool:
            got = retained(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/lane/+", 0.3)
            return len(got) == 2 and all(LaneState.model_validate_json(p).window_start == last for p in got.values())

        wait_for(third_window, 30, "the lanes' third window")
        configs = retained(mosquitto.port, "homeassistant/#")
        assert len(configs) == 2 * ENTITIES_PER_LANE + 1
        for topic, raw in configs.items():
            assert TOPIC.match(topic) and f"/{NODE}/" in topic, topic
            c = json.loads(raw)
            assert set(c) >= REQUIRED, (topic, set(c))
            if c.get("state_class"):
                assert c["state_class"] in ("measurement", "total_increasing") and c["unit_of_measurement"], topic
        # the states Home Assistant reads are the records the unit published, totals summed
        records = make_records(3)
        states = {t: LaneState.model_validate_json(p) for t, p in
                  retained(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/lane/+").items()}
        for lane_topic in lanes:
            lane = lane_topic.rsplit("/", 1)[1]
            mine = [r for r in records if r.lane == lane]
            s = states[lane_topic]
            assert s.window_start == mine[-1].window_start and s.queue == mine[-1].queue.length_max
            assert s.window == {c: sum(mine[-1].counts.get(c, {}).values()) for c in VehicleClass}
            assert s.total == {c: sum(sum(r.counts.get(c, {}).values()) for r in mine) for c in VehicleClass}
        # availability: the unit's retained status says online while it runs
        status = retained(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/status")
        assert StatusMessage.model_validate_json(next(iter(status.values()))).state == UnitState.ONLINE

        # Home Assistant restarts and announces itself: every config comes again
        before = len(live.messages)
        ha = Publisher(mosquitto.port, client_id="home-assistant")
        ha.send("homeassistant/status", b"online")
        ha.close()
        wait_for(lambda: len({t for t, p, _ in live.messages[before:] if t in configs and p}) == len(configs), 10,
                 "the configs announced again")
        assert proc.poll() is None
    finally:
        live.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    # the Last Will / offline status is the entities' availability
    status = retained(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/status")
    assert StatusMessage.model_validate_json(next(iter(status.values()))).state == UnitState.OFFLINE
    assert "Traceback" not in log.read_text()


def test_a_lane_removed_from_the_config_is_removed_from_home_assistant(mosquitto: Broker, tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    two = tmp_path / "two"
    two.mkdir()
    proc = spawn(ha_config(two, mosquitto.port, lanes=2), 0, 1, 0.01, 0, log)
    assert proc.wait(60) == 0, log.read_text()[-2000:]
    before = retained(mosquitto.port, "homeassistant/#")
    assert sum("-l2/config" in t for t in before) == ENTITIES_PER_LANE
    assert f"gatewatch/v1/{GATE}/{UNIT}/lane/l2" in retained(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/lane/+")

    one = tmp_path / "one"
    one.mkdir()
    (one / "outbox.sqlite3").write_bytes((two / "outbox.sqlite3").read_bytes())
    proc = spawn(ha_config(one, mosquitto.port, lanes=1), 0, 0, 0.01, 3, log)  # connects, holds 3 s, exits
    try:
        wait_for(lambda: not any("-l2/config" in t for t in retained(mosquitto.port, "homeassistant/#", 0.3)), 20,
                 "l2's entities removed")
    finally:
        assert proc.wait(60) == 0, log.read_text()[-2000:]
    after = retained(mosquitto.port, "homeassistant/#")
    assert set(after) == {t for t in before if "-l2/config" not in t}
    assert list(retained(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/lane/+")) == [
        f"gatewatch/v1/{GATE}/{UNIT}/lane/l1"]
    assert "removing homeassistant/sensor/" in log.read_text()
