"""GPIO outputs: the unit's status LED and each lane's signal light.

Every device takes gpiozero's pin factory by injection, so the same code drives a Pi's header
and gpiozero's ``MockFactory`` in tests.

The lane light is a safety-relevant display: drivers read green as "go ahead, the lane is
clear". So it fails safe: when the alert state is older than the server said it is valid for
(``AlertMessage.valid_s``), older than the unit's own limit (``GpioConfig.alert_stale_s``), was
never received, or the broker link is down, the light shows *unknown* (amber blinking) rather
than keeping its last colour. Deciding what to show is pure (`lane_light_for`) and is
re-evaluated on a clock tick, because staleness arrives without any message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gpiozero import LED, TrafficLights

from edge.config import GpioConfig
from wire.payloads import AlertLevel, AlertMessage, CameraState

log = logging.getLogger(__name__)

PinFactory = Any  # gpiozero.Factory; gpiozero ships no type hints


class LedPattern(StrEnum):
    OFF = "off"
    STEADY = "steady"
    SLOW_BLINK = "slow_blink"
    FAST_BLINK = "fast_blink"


#: (on_s, off_s) for each blinking pattern: slow is calm ("buffering, will catch up"), fast is
#: urgent ("blind: the camera is down").
BLINK_TIMES: dict[LedPattern, tuple[float, float]] = {
    LedPattern.SLOW_BLINK: (1.0, 1.0),
    LedPattern.FAST_BLINK: (0.1, 0.1),
}


def status_pattern(running: bool, connected: bool, camera: CameraState) -> LedPattern:
    """Camera trouble outranks link trouble: a unit that cannot see counts nothing at all,
    while a unit that cannot reach the broker still counts and buffers."""
    if not running:
        return LedPattern.OFF
    if camera != CameraState.UP:
        return LedPattern.FAST_BLINK
    if not connected:
        return LedPattern.SLOW_BLINK
    return LedPattern.STEADY


class StatusLed:
    """The unit status LED; re-applies the pattern only when it changes, so blinking is smooth."""

    def __init__(self, pin: int, *, pin_factory: PinFactory = None) -> None:
        self.led = LED(pin, pin_factory=pin_factory)
        self.pattern = LedPattern.OFF

    def show(self, pattern: LedPattern) -> None:
        if pattern == self.pattern:
            return
        self.pattern = pattern
        if pattern == LedPattern.OFF:
            self.led.off()
        elif pattern == LedPattern.STEADY:
            self.led.on()
        else:
            on_s, off_s = BLINK_TIMES[pattern]
            self.led.blink(on_time=on_s, off_time=off_s)

    def close(self) -> None:
        self.led.close()


class LaneLight(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"
    UNKNOWN = "unknown"


_LEVEL_LIGHT = {
    AlertLevel.GREEN: LaneLight.GREEN,
    AlertLevel.YELLOW: LaneLight.AMBER,
    AlertLevel.ORANGE: LaneLight.AMBER,
    AlertLevel.RED: LaneLight.RED,
}


@dataclass(frozen=True, slots=True)
class ReceivedAlert:
    message: AlertMessage
    received_at: float  # the unit's wall clock when it arrived


def lane_light_for(alert: ReceivedAlert | None, now: float, stale_s: float, link_up: bool) -> LaneLight:
    """The colour a lane light should show now.

    Age is the larger of "since the server stamped it" and "since we received it": a retained
    alert from yesterday is stale on arrival, and a unit whose clock runs behind the server's
    still times a message out from when it arrived.
    """
    if alert is None or not link_up:
        return LaneLight.UNKNOWN
    age = max(now - alert.message.at.timestamp(), now - alert.received_at)
    if age > min(alert.message.valid_s, stale_s):
        return LaneLight.UNKNOWN
    return _LEVEL_LIGHT[alert.message.level]


class LaneSignal:
    """One lane's red/amber/green light (gpiozero TrafficLights)."""

    UNKNOWN_BLINK_S = 0.5

    def __init__(self, red: int, amber: int, green: int, *, pin_factory: PinFactory = None) -> None:
        self.lights = TrafficLights(red=red, amber=amber, green=green, pin_factory=pin_factory)
        self.showing: LaneLight | None = None
        self.show(LaneLight.UNKNOWN)

    def show(self, light: LaneLight) -> None:
        if light == self.showing:
            return
        self.lights.off()
        if light == LaneLight.GREEN:
            self.lights.green.on()
        elif light == LaneLight.RED:
            self.lights.red.on()
        elif light == LaneLight.AMBER:
            self.lights.amber.on()
        else:
            self.lights.amber.blink(on_time=self.UNKNOWN_BLINK_S, off_time=self.UNKNOWN_BLINK_S)
        # only now: whoever reads `showing` (health, tests) sees what the pins really show
        self.showing = light

    def close(self) -> None:
        self.lights.close()


class SignalBoard:
    """All of a unit's GPIO outputs, driven by alerts, link state and camera state.

    `tick()` is called on a clock (the runtime's ticker) rather than only on messages, because
    an alert going stale or the broker going away produces no message at all.
    """

    def __init__(
        self,
        cfg: GpioConfig,
        *,
        pin_factory: PinFactory = None,
        clock: Callable[[], float],
    ) -> None:
        self.stale_s = cfg.alert_stale_s
        self._clock = clock
        self.status = StatusLed(cfg.status_led, pin_factory=pin_factory) if cfg.status_led is not None else None
        self.lanes = {
            s.lane: LaneSignal(s.red, s.amber, s.green, pin_factory=pin_factory) for s in cfg.lane_signals
        }
        self._alerts: dict[str, ReceivedAlert] = {}

    def on_alert(self, message: AlertMessage | None, lane: str) -> None:
        """Record the latest alert state of `lane`; None means the server cleared it."""
        if lane not in self.lanes:
            return
        if message is None:
            self._alerts.pop(lane, None)
        else:
            self._alerts[lane] = ReceivedAlert(message, self._clock())
            log.debug("lane %s alert level %s", lane, message.level)

    def tick(self, *, running: bool, connected: bool, camera: CameraState) -> None:
        now = self._clock()
        if self.status is not None:
            self.status.show(status_pattern(running, connected, camera))
        for lane, signal in self.lanes.items():
            light = lane_light_for(self._alerts.get(lane), now, self.stale_s, connected)
            if light != signal.showing:
                log.info("lane %s signal -> %s", lane, light)
            signal.show(light)

    def close(self) -> None:
        if self.status is not None:
            self.status.close()
        for signal in self.lanes.values():
            signal.close()
