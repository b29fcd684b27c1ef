"""Induction loop / beam-break sensors: an independent count per lane, next to the camera's.

A second, physical count is how a gate checks the camera: a window where the two disagree is
worth a look. The count lands in `WindowRecord.loop_count` of the same record, so both travel
together and sit side by side in InfluxDB.

Debouncing is done here in software, on top of gpiozero's ``bounce_time``: pin back-ends differ
(lgpio filters glitches, RPi.GPIO ignores edges after an edge, ``MockFactory`` does nothing),
and a count must not depend on which one a Pi happens to use. The rule: an activation counts
only if the input was inactive for at least ``bounce_s`` before it and the previous count is at
least ``bounce_s`` old. The first half rejects chatter when a vehicle leaves the beam, the second
chatter when it enters.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable

from gpiozero import DigitalInputDevice

from edge.config import LoopSensorConfig
from edge.service.signals import PinFactory
from wire.payloads import WindowRecord

log = logging.getLogger(__name__)

#: pulses kept per lane while waiting for their window's record (a truck a second for a day).
MAX_PULSES = 100_000


class LoopCounter:
    """Debounced activation times of one sensor, counted per window. Pure: no GPIO."""

    def __init__(self, bounce_s: float, clock: Callable[[], float]) -> None:
        self.bounce_s = bounce_s
        self._clock = clock
        self._pulses: deque[float] = deque(maxlen=MAX_PULSES)
        self._last_count: float | None = None
        self._last_release: float | None = None
        self._lock = threading.Lock()
        self.total = 0
        self.ignored = 0

    def activated(self) -> None:
        now = self._clock()
        with self._lock:
            if (self._last_release is not None and now - self._last_release < self.bounce_s) or (
                self._last_count is not None and now - self._last_count < self.bounce_s
            ):
                self.ignored += 1
                return
            self._last_count = now
            self._pulses.append(now)
            self.total += 1

    def deactivated(self) -> None:
        with self._lock:
            self._last_release = self._clock()

    def take(self, start: float, length_s: float) -> int:
        """Count pulses in [start, start + length_s) and forget everything before its end.

        Records arrive in window order, so nothing earlier will be asked for again.
        """
        end = start + length_s
        with self._lock:
            pulses = list(self._pulses)
            n = bisect_left(pulses, end) - bisect_left(pulses, start)
            while self._pulses and self._pulses[0] < end:
                self._pulses.popleft()
        return n


class LoopSensor:
    """A gpiozero input bound to a `LoopCounter`."""

    def __init__(self, cfg: LoopSensorConfig, counter: LoopCounter, *, pin_factory: PinFactory = None) -> None:
        self.lane = cfg.lane
        self.counter = counter
        self.device = DigitalInputDevice(
            cfg.pin, pull_up=cfg.pull_up, bounce_time=cfg.bounce_s or None, pin_factory=pin_factory
        )
        self.device.when_activated = counter.activated
        self.device.when_deactivated = counter.deactivated

    def close(self) -> None:
        self.device.close()


class LoopSensors:
    """Every loop sensor of a unit; stamps their per-window counts onto window records."""

    def __init__(
        self, cfgs: Iterable[LoopSensorConfig], *, clock: Callable[[], float], pin_factory: PinFactory = None
    ) -> None:
        self.sensors = {
            c.lane: LoopSensor(c, LoopCounter(c.bounce_s, clock), pin_factory=pin_factory) for c in cfgs
        }

    def annotate(self, record: WindowRecord) -> WindowRecord:
        sensor = self.sensors.get(record.lane)
        if sensor is None:
            return record
        n = sensor.counter.take(record.window_start.timestamp(), record.window_s)
        return record.model_copy(update={"loop_count": n})

    def close(self) -> None:
        for s in self.sensors.values():
            s.close()
