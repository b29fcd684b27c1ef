"""Unit health: what an operator needs to tell "no trucks" from "a sick unit".

The numbers come from small readers that are injected (sysfs root, vcgencmd runner, memory),
so tests fake a Pi's thermal zone on an x86 box and nothing here needs real hardware. A reader
that fails returns None: a missing thermometer must never stop health from being sent.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from edge.service.outbox import OutboxStats
from wire.payloads import CameraState, HealthMessage

log = logging.getLogger(__name__)

THERMAL_ROOT = Path("/sys/class/thermal")


def read_cpu_temp(root: Path = THERMAL_ROOT) -> float | None:
    """Hottest thermal zone in degrees C (sysfs reports millidegrees); None where there is none."""
    temps: list[float] = []
    for zone in sorted(root.glob("thermal_zone*/temp")):
        try:
            temps.append(int(zone.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    plausible = [t for t in temps if -40 <= t <= 150]
    return max(plausible) if plausible else None


def read_throttled(vcgencmd: str | None = None, timeout_s: float = 2.0) -> str | None:
    """`vcgencmd get_throttled` (e.g. ``0x50005``: under-voltage now and since boot), where present.

    Under-voltage is the classic cause of a Pi at a roadside cabinet corrupting its SD card or
    dropping frames, so it is worth a field of its own.
    """
    exe = vcgencmd or shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=timeout_s, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("vcgencmd get_throttled failed: %s", exc)
        return None
    value = out.stdout.strip().partition("=")[2]
    return value[:20] or None


def read_mem_mb() -> float:
    """This process's resident memory: a slow leak shows up here days before the OOM killer."""
    return float(psutil.Process(os.getpid()).memory_info().rss) / (1024 * 1024)


@dataclass
class HealthReaders:
    cpu_temp_c: Callable[[], float | None] = read_cpu_temp
    throttled: Callable[[], str | None] = read_throttled
    mem_mb: Callable[[], float] = read_mem_mb


@dataclass(frozen=True, slots=True)
class PipelineFigures:
    fps: float
    inference_ms: float
    camera: CameraState


@dataclass
class HealthSampler:
    """Builds `HealthMessage`s; the seq is filled in by the outbox at enqueue."""

    gate: str
    unit: str
    interval_s: float
    readers: HealthReaders = field(default_factory=HealthReaders)
    wall_clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.monotonic()

    def sample(self, seq: int, pipeline: PipelineFigures, outbox: OutboxStats) -> HealthMessage:
        now = self.wall_clock()
        oldest = None if outbox.oldest_created is None else max(0.0, now - outbox.oldest_created)
        return HealthMessage(
            gate=self.gate,
            unit=self.unit,
            seq=seq,
            at=datetime.fromtimestamp(now, UTC),
            interval_s=self.interval_s,
            fps=min(max(pipeline.fps, 0.0), 1000.0),
            inference_ms=min(max(pipeline.inference_ms, 0.0), 60_000.0),
            camera=pipeline.camera,
            outbox_depth=outbox.depth,
            outbox_oldest_s=oldest,
            dropped_records=outbox.dropped,
            outbox_first_seq=outbox.first_seq,
            outbox_lost=outbox.lost,
            cpu_temp_c=self.readers.cpu_temp_c(),
            throttled=self.readers.throttled(),
            mem_mb=self.readers.mem_mb(),
            uptime_s=self.monotonic() - self.started,
        )
