"""Frame sources: recorded files (replay), RTSP/HTTP streams, USB cameras and the Pi camera.

Timestamps matter more than pixels here: window records are keyed by wall-clock time, so a
replayed file gets deterministic timestamps from the file itself (start + frame index / fps)
while live sources stamp frames with the wall clock when they arrive.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
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


FrameTransform = Callable[[Image, int], Image]
_END = object()


class FileSource:
    """Replay a recorded file, as fast as possible or at recorded speed.

    Decoding runs in a reader thread a few frames ahead of the pipeline, so decode and inference
    overlap on a multi-core CPU instead of taking turns. Which frames are decoded is decided up front:
    every `stride`-th one, or, with `rate` (processed frames per second of video), the frame a live
    loop that needs 1/rate s per frame would find newest each time it is ready, which is how a Pi
    that cannot keep up drops frames (`LiveSource`). Skipped frames are grabbed, not decoded.
    `transform` (a developer tool: simulated dusk, compression...) runs in the reader thread too.
    `prefetch=0` reads in the caller's thread instead, as a plain OpenCV loop does.
    """

    def __init__(
        self,
        path: str | Path,
        start: float,
        stride: int = 1,
        realtime: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        *,
        rate: float | None = None,
        transform: FrameTransform | None = None,
        prefetch: int = 3,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CaptureError(f"video not found: {self.path}")
        if rate is not None and rate <= 0:
            raise CaptureError(f"processing rate must be positive, got {rate}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise CaptureError(f"cannot open video {self.path} (not a video OpenCV can decode)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 1.0 <= fps <= 240.0:
            log.warning("%s declares fps %.2f; assuming %.0f", self.path.name, fps, FALLBACK_FPS)
            fps = FALLBACK_FPS
        self.fps = fps
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.start, self.stride, self.realtime, self.rate = start, stride, realtime, rate
        self._transform = transform
        self._sleep, self._clock = sleep, clock
        self._t0: float | None = None
        self.decode_ms = 0.0
        self.state = CameraState.UP
        self._first = True
        self._prefetch = max(0, prefetch)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._sync: Iterator[tuple[int, Image, float]] | None = None

    def index_of(self, k: int) -> int:
        """Source frame index of the k-th processed frame."""
        if self.rate is None or self.rate >= self.fps:
            return k * self.stride
        return math.floor(k * self.stride * self.fps / self.rate + 1e-9)

    @property
    def expected_frames(self) -> int:
        """How many frames a full replay processes (for progress bars)."""
        n, k = 0, 0
        while self.frame_count and (i := self.index_of(k)) < self.frame_count:
            n, k = n + 1, k + 1
            if i < 0:
                break
        return n

    def _frames(self) -> Iterator[tuple[int, Image, float]]:
        """(index, image, decode ms) of every frame to process, in order."""
        pos = -1
        k = 0
        while not self._stop.is_set():
            want = self.index_of(k)
            t0 = time.perf_counter()
            while pos < want - 1:
                if not self._cap.grab():  # skip without decoding
                    return
                pos += 1
            ok, decoded = self._cap.read()
            decode_ms = (time.perf_counter() - t0) * 1000
            if not ok or decoded is None:
                return
            pos += 1
            image = cast(Image, decoded)
            if self._transform is not None:
                image = self._transform(image, pos)
            yield pos, image, decode_ms
            k += 1

    def _read_ahead(self) -> None:
        try:
            for item in self._frames():
                self._put(item)
        except Exception as exc:  # the reader thread's boundary: the consumer raises it
            self._put(exc)
        finally:
            self._put(_END)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next(self) -> Any:
        if self._prefetch == 0:  # in the caller's thread, as a plain OpenCV loop would
            if self._sync is None:
                self._sync = self._frames()
            return next(self._sync, _END)
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_ahead, name=f"decode-{self.path.name}", daemon=True)
            self._reader.start()
        return self._queue.get()

    def read(self) -> Frame | None:
        item = self._next()
        if isinstance(item, Exception):
            raise CaptureError(f"reading {self.path} failed: {item}") from item
        if item is _END:
            if self._prefetch:
                self._queue.put(_END)  # later reads see the end too
            if self._first:
                raise CaptureError(f"cannot read any frame from {self.path}")
            return None
        index, image, self.decode_ms = item
        self._first = False
        offset = index / self.fps
        if self.realtime:
            now = self._clock()
            if self._t0 is None:
                self._t0 = now - offset
            ahead = self._t0 + offset - now
            if ahead > 0:
                self._sleep(ahead)
        return Frame(self.start + offset, index, cast(Image, image))

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._cap.release()


class LiveSource:
    """RTSP/HTTP/USB through OpenCV, reconnecting with exponential backoff when it drops.

    A grabber thread reads the camera as fast as it delivers and keeps only the newest frame; the
    pipeline takes that one whenever it is ready for the next. On a CPU slower than the camera the
    frames it cannot process are dropped (and counted in `dropped`) instead of queueing in FFmpeg's
    buffer, where every count would come later and later. `FileSource(rate=...)` replays a file the
    same way, so a developer sees what a slow unit would count.
    """

    #: longest `read()` waits for a new frame before returning a tick (the pipeline closes windows on ticks)
    TICK_S = 1.0

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
        self._delivered = -1
        self._latest: Frame | None = None
        self._latest_decode_ms = 0.0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._grabber: threading.Thread | None = None
        self.fps = 0.0
        self.decode_ms = 0.0
        self.ever_opened = False
        self.dropped = 0

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
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if 1 <= fps <= 240 else FALLBACK_FPS
            self._delay = self.cfg.reconnect_initial_s
            self.ever_opened = True
            with self._cond:
                self._cap = cap
                self.state = CameraState.UP
                self._cond.notify_all()
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

    def _grab_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self._cap is None and not self._try_open():
                    continue
                t0 = time.perf_counter()
                ok, image = self._cap.read()
                decode_ms = (time.perf_counter() - t0) * 1000
                if not ok or image is None:
                    log.warning("camera %s dropped; reconnecting", self._describe())
                    self._cap.release()
                    with self._cond:
                        self._cap = None
                        self.state = CameraState.RECONNECTING
                    continue
                with self._cond:
                    self._index += 1
                    self._latest = Frame(self._clock(), self._index, cast(Image, image))
                    self._latest_decode_ms = decode_ms
                    self._cond.notify_all()
            except Exception:  # the grabber's boundary: a camera driver surprise means reconnect, not a dead unit
                log.exception("camera %s: grabbing failed; reconnecting", self._describe())
                self._release()
                self._sleep(min(1.0, self._delay))

    def _release(self) -> None:
        with self._cond:
            cap, self._cap = self._cap, None
            if cap is not None:
                self.state = CameraState.RECONNECTING
        if cap is not None:
            cap.release()

    def _start(self) -> None:
        if self._grabber is None:
            self._grabber = threading.Thread(target=self._grab_loop, name="camera-grabber", daemon=True)
            self._grabber.start()

    def read(self) -> Frame | None:
        self._start()
        with self._cond:
            fresh = self._cond.wait_for(
                lambda: self._latest is not None and self._latest.index > self._delivered, timeout=self.TICK_S
            )
            if not fresh or self._latest is None:
                return Frame(self._clock(), self._delivered, None)
            frame = self._latest
            if self._delivered >= 0:
                self.dropped += frame.index - self._delivered - 1
            self._delivered = frame.index
            self.decode_ms = self._latest_decode_ms
        return frame

    def wait_open(self, timeout: float) -> None:
        """For interactive commands: fail clearly if the camera never opens."""
        self._start()
        with self._cond:
            if self._cond.wait_for(lambda: self._cap is not None, timeout=timeout):
                return
        raise CaptureError(f"camera {self._describe()} did not open within {timeout:.0f}s")

    def close(self) -> None:
        self._stop.set()
        if self._grabber is not None:
            self._grabber.join(timeout=5)
        self._release()


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


def open_source(cfg: SourceConfig, start: float, stride: int = 1, rate: float | None = None) -> FrameSource:
    if cfg.kind == "file":
        assert cfg.path is not None
        return FileSource(cfg.path, start, stride, cfg.realtime, rate=rate)
    if cfg.kind == "picamera":
        return PiCameraSource(cfg)
    return LiveSource(cfg)
