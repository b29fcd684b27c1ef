"""GPIO on gpiozero's MockFactory: status LED, lane lights from alerts, loop-sensor counts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest
from gpiozero.pins.mock import MockFactory

from edge.config import GpioConfig, LoopSensorConfig
from edge.service.loop_sensor import LoopSensors
from edge.service.outbox import Outbox
from edge.service.runtime import EdgeRuntime
from edge.service.signals import LaneLight, LedPattern, SignalBoard
from tests.fixtures.mosquitto import Broker
from tests.fixtures.procs import wait_for
from tests.runtime.helpers import GATE, FakePipeline, make_records, unit_config
from wire.payloads import AlertLevel, AlertMessage, CameraState, encode
from wire.topics import Topic

T0 = 1_795_000_000.0  # a fixed wall-clock time for the fake clock


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def gpio_cfg(**over: Any) -> GpioConfig:
    return GpioConfig.model_validate({
        "status_led": 4,
        "lane_signals": [{"lane": "l1", "red": 17, "amber": 27, "green": 22}],
        **over,
    })


def transitions(pin: Any, during_s: float) -> int:
    pin.clear_states()
    time.sleep(during_s)
    return len(pin.states) - 1


def lit(factory: MockFactory) -> tuple[bool, bool, bool]:
    """(red, amber, green) pin levels of lane l1."""
    return (factory.pin(17).state, factory.pin(27).state, factory.pin(22).state)


def pattern(board: SignalBoard) -> LedPattern:
    assert board.status is not None
    return board.status.pattern


def alert(level: AlertLevel, at: float, valid_s: float = 60.0, lane: str = "l1") -> AlertMessage:
    return AlertMessage(gate=GATE, lane=lane, at=datetime.fromtimestamp(at, UTC), valid_s=valid_s, level=level)


def test_status_led_steady_when_counting_and_connected_slow_offline_fast_camera_down() -> None:
    factory = MockFactory()
    board = SignalBoard(gpio_cfg(), pin_factory=factory, clock=Clock())
    led = factory.pin(4)
    try:
        board.tick(running=True, connected=True, camera=CameraState.UP)
        assert pattern(board) == LedPattern.STEADY
        assert led.state and transitions(led, 0.4) == 0

        board.tick(running=True, connected=False, camera=CameraState.UP)  # buffering offline
        assert pattern(board) == LedPattern.SLOW_BLINK
        time.sleep(0.05)
        slow = transitions(led, 0.6)
        board.tick(running=True, connected=True, camera=CameraState.DOWN)  # blind: most urgent
        assert pattern(board) == LedPattern.FAST_BLINK
        fast = transitions(led, 0.6)
        assert slow <= 1 and fast >= 4, (slow, fast)
        board.tick(running=True, connected=False, camera=CameraState.RECONNECTING)
        assert pattern(board) == LedPattern.FAST_BLINK

        board.tick(running=False, connected=True, camera=CameraState.UP)
        assert pattern(board) == LedPattern.OFF and not led.state
    finally:
        board.close()


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (AlertLevel.GREEN, (False, False, True)),
        (AlertLevel.YELLOW, (False, True, False)),
        (AlertLevel.ORANGE, (False, True, False)),
        (AlertLevel.RED, (True, False, False)),
    ],
)
def test_lane_light_follows_alert_level(level: AlertLevel, expected: tuple[bool, bool, bool]) -> None:
    factory = MockFactory()
    clock = Clock()
    board = SignalBoard(gpio_cfg(), pin_factory=factory, clock=clock)
    try:
        board.on_alert(alert(level, clock.t - 1), "l1")
        board.tick(running=True, connected=True, camera=CameraState.UP)
        assert lit(factory) == expected
    finally:
        board.close()


def test_lane_light_fails_safe_to_unknown() -> None:
    factory = MockFactory()
    clock = Clock()
    board = SignalBoard(gpio_cfg(alert_stale_s=90.0), pin_factory=factory, clock=clock)
    signal = board.lanes["l1"]

    def tick(connected: bool = True) -> LaneLight | None:
        board.tick(running=True, connected=connected, camera=CameraState.UP)
        return signal.showing

    try:
        assert tick() == LaneLight.UNKNOWN  # never received
        assert transitions(factory.pin(27), 1.2) >= 2 and not factory.pin(22).state  # amber blinking

        board.on_alert(alert(AlertLevel.GREEN, clock.t, valid_s=30), "l1")
        assert tick() == LaneLight.GREEN
        clock.t += 29
        assert tick() == LaneLight.GREEN
        clock.t += 2  # past the server's valid_s: never keep an old green
        assert tick() == LaneLight.UNKNOWN and not factory.pin(22).state

        board.on_alert(alert(AlertLevel.GREEN, clock.t, valid_s=600), "l1")
        assert tick() == LaneLight.GREEN
        clock.t += 91  # valid for the server, but past the unit's own alert_stale_s
        assert tick() == LaneLight.UNKNOWN

        board.on_alert(alert(AlertLevel.RED, clock.t - 3600, valid_s=600), "l1")  # an old retained copy
        assert tick() == LaneLight.UNKNOWN

        board.on_alert(alert(AlertLevel.GREEN, clock.t), "l1")
        assert tick() == LaneLight.GREEN
        assert tick(connected=False) == LaneLight.UNKNOWN  # broker gone
        assert tick() == LaneLight.GREEN
        board.on_alert(None, "l1")  # retained alert cleared
        assert tick() == LaneLight.UNKNOWN
    finally:
        board.close()


def test_runtime_drives_lights_and_led_from_the_broker(mosquitto: Broker, tmp_path: Path) -> None:
    """End to end: a retained alert from the 'server' turns the light red; the broker going away
    turns it to unknown and the status LED to slow blink."""
    factory = MockFactory()
    cfg = unit_config(tmp_path, mosquitto.port, gpio=gpio_cfg().model_dump())
    topic = str(Topic.alert(GATE, "l1"))
    mqtt_publish.single(topic, encode(alert(AlertLevel.RED, time.time())), qos=1, retain=True,
                        hostname="127.0.0.1", port=mosquitto.port)
    board = SignalBoard(cfg.gpio, pin_factory=factory, clock=time.time)
    runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes), signals=board, flush_timeout_s=0.5)
    pipeline = FakePipeline(make_records(1), hold_s=60)
    worker = threading.Thread(target=runtime.run, args=(pipeline,))
    worker.start()
    try:
        wait_for(lambda: board.lanes["l1"].showing == LaneLight.RED, 10, "red light")
        assert lit(factory) == (True, False, False)
        assert board.status is not None
        wait_for(lambda: board.status is not None and board.status.pattern == LedPattern.STEADY, 5, "steady LED")

        mqtt_publish.single(topic, encode(alert(AlertLevel.GREEN, time.time())), qos=1, retain=True,
                            hostname="127.0.0.1", port=mosquitto.port)
        wait_for(lambda: board.lanes["l1"].showing == LaneLight.GREEN, 10, "green light")

        pipeline.stats.camera = CameraState.DOWN
        wait_for(lambda: board.status is not None and board.status.pattern == LedPattern.FAST_BLINK, 5, "fast")
        pipeline.stats.camera = CameraState.UP

        mosquitto.stop()
        wait_for(lambda: board.lanes["l1"].showing == LaneLight.UNKNOWN, 15, "unknown after broker loss")
        assert not factory.pin(22).state  # green is off, not kept
        wait_for(lambda: board.status is not None and board.status.pattern == LedPattern.SLOW_BLINK, 5, "slow")
    finally:
        runtime.request_stop()
        pipeline.stop()
        worker.join(20)
    assert not worker.is_alive()


def test_loop_sensor_pulses_with_bounce_count_per_window() -> None:
    factory = MockFactory()
    clock = Clock(T0)
    loops = LoopSensors(
        [LoopSensorConfig(lane="l1", pin=5, bounce_s=0.05)], clock=clock, pin_factory=factory
    )
    pin = factory.pin(5)

    def at(t: float, high: bool) -> None:
        clock.t = T0 + t
        pin.drive_high() if high else pin.drive_low()

    def vehicle(start: float, length_s: float = 0.4, chatter: bool = True) -> None:
        at(start, True)
        if chatter:  # contact bounce on entry
            for k in range(1, 4):
                at(start + 0.004 * k, k % 2 == 0)
            at(start + 0.016, True)
        at(start + length_s, False)
        if chatter:  # and on exit
            for k in range(1, 4):
                at(start + length_s + 0.004 * k, k % 2 == 1)
            at(start + length_s + 0.016, False)

    try:
        # Window [T0, T0+10): three vehicles, two of them with chatter on both edges.
        vehicle(1.0)
        vehicle(3.0, chatter=False)
        vehicle(6.0, length_s=1.5)
        # Window [T0+10, T0+20): two vehicles close behind each other (0.2 s gap > bounce).
        vehicle(12.0, length_s=0.3)
        vehicle(12.5, length_s=0.3)
        counter = loops.sensors["l1"].counter
        assert counter.total == 5 and counter.ignored > 0

        records = make_records(2, lanes=2, window_s=10.0)  # windows 0 and 1 of l1 and l2
        start = datetime.fromtimestamp(T0, UTC)
        records = [r.model_copy(update={"window_start": start + (r.window_start - records[0].window_start)})
                   for r in records]
        out = [loops.annotate(r) for r in records]
        assert [(r.lane, r.loop_count) for r in out] == [("l1", 3), ("l2", None), ("l1", 2), ("l2", None)]
        assert out[0].counts == records[0].counts  # camera counts untouched, side by side
        assert out[0].window_start == start and out[2].window_start == start + timedelta(seconds=10)
    finally:
        loops.close()

