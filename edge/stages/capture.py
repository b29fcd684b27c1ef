"""Frame sources: recorded files (replay), RTSP/HTTP streams, USB cameras and the Pi camera.

Timestamps matter more than pixels here: window records are keyed by wall-clock time, so a
replayed file gets deterministic timestamps from the file itself (start + frame index / fps)
while live sources stamp frames with the wall clock when they arrive.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

# FFmpeg's own chatter ("moov atom not found") would bury our one clear error line; set the
# variable to e.g. 24 (warning) when debugging a camera.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2
import numpy as np
import numpy.typing as npt

from edge import EdgeError
from edge.config import SourceConfig
from wire.payloads import CameraState

log = logging.getLogger(__name__)
Image = npt.NDArray[np.uint8]
FALLBACK_FPS = 25.0


class CaptureError(EdgeError):
    """A video cannot be read or a camera never opened."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame, or (image None) a tick saying no frame arrived by time t: the camera is down,
    and the pipeline still needs to close windows on time."""

    t: float
    index: int
    image: Image | None


class FrameSource(Protocol):
    """Seam between cameras/files and the pipeline."""

    @property
    def state(self) -> CameraState: ...

    @property
    def fps(self) -> float: ...

    @property
    def decode_ms(self) -> float: ...

    def read(self) -> Frame | None:
        """The next frame; None at the end of a file (live sources never end)."""
        ...

    def close(self) -> None: ...


class FileSource:
    """Replay a recorded file, as fast as possible or at recorded speed."""

    def __init__(
        self,
        path: str | Path,
        start: float,
        stride: int = 1,
        realtime: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CaptureError(f"video not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise CaptureError(f"cannot open video {self.path} (not a video OpenCV can decode)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 1.0 <= fps <= 240.0:
            log.warning("%s declares fps %.2f; assuming %.0f", self.path.name, fps, FALLBACK_FPS)
            fps = FALLBACK_FPS
        self.fps = fps
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.start, self.stride, self.realtime = start, stride, realtime
        self._sleep, self._clock = sleep, clock
        self._index = -1
        self._t0: float | None = None
        self.decode_ms = 0.0
        self.state = CameraState.UP
        self._first = True

    def read(self) -> Frame | None:
        t0 = time.perf_counter()
        for _ in range(self.stride - 1 if self._index >= 0 else 0):
            if not self._cap.grab():  # skip without decoding
                return None
            self._index += 1
        ok, image = self._cap.read()
        self.decode_ms = (time.perf_counter() - t0) * 1000
        if not ok or image is None:
            if self._first:
                raise CaptureError(f"cannot read any frame from {self.path}")
            return None
        self._first = False
        self._index += 1
        offset = self._index / self.fps
        if self.realtime:
            now = self._clock()
            if self._t0 is None:
                self._t0 = now - offset
            ahead = self._t0 + offset - now
            if ahead > 0:
                self._sleep(ahead)
        return Frame(self.start + offset, self._index, cast(Image, image))

    def close(self) -> None:
        self._cap.release()


class LiveSource:
    """RTSP/HTTP/USB through OpenCV, reconnecting with exponential backoff when it drops."""

    def __init__(
        self,
        cfg: SourceConfig,
        opener: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self._opener = opener or self._open_cv
        self._clock, self._sleep = clock, sleep
        self._cap: Any = None
        self.state = CameraState.DOWN
        self._delay = cfg.reconnect_initial_s
        self._next_try = 0.0
        self._index = -1
        self.fps = 0.0
        self.decode_ms = 0.0
        self.ever_opened = False

    def _open_cv(self) -> Any:
        target: str | int = self.cfg.index if self.cfg.kind == "usb" else str(self.cfg.path)
        cap = cv2.VideoCapture(target)
        if self.cfg.width and self.cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
        return cap

    def _try_open(self) -> bool:
        now = self._clock()
        if now < self._next_try:
            self._sleep(min(self._next_try - now, 1.0))
            return False
        cap = self._opener()
        if cap is not None and cap.isOpened():
            self._cap = cap
            self.state = CameraState.UP
            self._delay = self.cfg.reconnect_initial_s
            self.ever_opened = True
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if 1 <= fps <= 240 else FALLBACK_FPS
            log.info("camera %s opened", self._describe())
            return True
        if cap is not None:
            cap.release()
        self.state = CameraState.RECONNECTING if self.ever_opened else CameraState.DOWN
        log.warning("camera %s not available; retrying in %.1fs", self._describe(), self._delay)
        self._next_try = now + self._delay
        self._delay = min(self._delay * 2, self.cfg.reconnect_max_s)
        return False

    def _describe(self) -> str:
        return f"usb:{self.cfg.index}" if self.cfg.kind == "usb" else "stream"  # URLs may hold credentials

    def read(self) -> Frame | None:
        if self._cap is None and not self._try_open():
            return Frame(self._clock(), self._index, None)
        t0 = time.perf_counter()
        ok, image = self._cap.read()
        self.decode_ms = (time.perf_counter() - t0) * 1000
        if not ok or image is None:
            log.warning("camera %s dropped; reconnecting", self._describe())
            self._cap.release()
            self._cap = None
            self.state = CameraState.RECONNECTING
            return Frame(self._clock(), self._index, None)
        self._index += 1
        return Frame(self._clock(), self._index, cast(Image, image))

    def wait_open(self, timeout: float) -> None:
        """For interactive commands: fail clearly if the camera never opens."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._cap is not None or self._try_open():
                return
        raise CaptureError(f"camera {self._describe()} did not open within {timeout:.0f}s")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class PiCameraSource:
    """Raspberry Pi camera through picamera2 (imported lazily: it only exists on a Pi)."""

    def __init__(self, cfg: SourceConfig, clock: Callable[[], float] = time.time) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CaptureError(
                "source kind 'picamera' needs picamera2 (apt install python3-picamera2)"
            ) from None
        self._cam = Picamera2()
        size = (cfg.width or 1280, cfg.height or 720)
        self._cam.configure(self._cam.create_video_configuration(main={"size": size, "format": "RGB888"}))
        self._cam.start()
        self._clock = clock
        self._index = -1
        self.decode_ms = 0.0
        self.state = CameraState.UP
        self.fps = 30.0

    def read(self) -> Frame | None:
        t0 = time.perf_counter()
        image = self._cam.capture_array()
        self.decode_ms = (time.perf_counter() - t0) * 1000
        self._index += 1
        return Frame(self._clock(), self._index, cast(Image, image))

    def close(self) -> None:
        self._cam.stop()


def open_source(cfg: SourceConfig, start: float, stride: int = 1) -> FrameSource:
    if cfg.kind == "file":
        assert cfg.path is not None
        return FileSource(cfg.path, start, stride, cfg.realtime)
    if cfg.kind == "picamera":
        return PiCameraSource(cfg)
    return LiveSource(cfg)
