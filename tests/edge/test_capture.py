"""Frame sources: which frames a slow unit processes, prefetching, and the live newest-frame loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.config import SourceConfig
from edge.stages.capture import FileSource, LiveSource

W, H = 64, 48


def numbered_clip(path: Path, n: int, fps: float) -> Path:
    """A lossless-enough clip whose frame i is a flat grey of level 4*i (readable after decoding)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((H, W, 3), 4 * i, np.uint8))
    writer.release()
    return path


def level(image: Any) -> int:
    return round(float(image.mean()) / 4)


def read_all(src: FileSource) -> list[tuple[int, float, int]]:
    out = []
    try:
        while (f := src.read()) is not None:
            assert f.image is not None
            out.append((f.index, f.t, level(f.image)))
    finally:
        src.close()
    return out


@pytest.mark.parametrize("prefetch", [0, 3])
def test_every_frame_in_order_with_or_without_the_reader_thread(tmp_path: Path, prefetch: int) -> None:
    clip = numbered_clip(tmp_path / "c.avi", 40, 25.0)
    frames = read_all(FileSource(clip, 100.0, prefetch=prefetch))
    assert [i for i, _, _ in frames] == list(range(40))
    assert [lv for _, _, lv in frames] == list(range(40))  # the image is the frame it claims to be
    assert frames[10][1] == pytest.approx(100.0 + 10 / 25.0)


@pytest.mark.parametrize(
    ("fps", "rate", "expected"),
    [
        (30.0, 10.0, [0, 3, 6, 9, 12]),
        (25.0, 10.0, [0, 2, 5, 7, 10]),  # the newest frame each time the unit is ready: 0, 2.5, 5, 7.5 ...
        (30.0, 5.0, [0, 6, 12, 18, 24]),
        (10.0, 25.0, [0, 1, 2, 3, 4]),  # a unit faster than the camera processes every frame
    ],
)
def test_a_slow_unit_processes_the_newest_frame_each_time_it_is_ready(tmp_path: Path, fps: float, rate: float,
                                                                      expected: list[int]) -> None:
    clip = numbered_clip(tmp_path / "c.avi", 25, fps)
    src = FileSource(clip, 0.0, rate=rate)
    frames = read_all(src)
    assert [i for i, _, _ in frames][:5] == expected
    assert [lv for _, _, lv in frames][:5] == expected  # skipped frames were grabbed, not mixed up
    assert len(frames) == src.expected_frames
    assert frames[1][1] == pytest.approx(expected[1] / fps)  # timestamps stay the frames' own


def test_transform_sees_each_frame_and_its_index(tmp_path: Path) -> None:
    clip = numbered_clip(tmp_path / "c.avi", 10, 10.0)
    seen: list[int] = []

    def invert(image: Any, index: int) -> Any:
        seen.append(index)
        return 255 - image

    frames = read_all(FileSource(clip, 0.0, stride=2, transform=invert))
    assert seen == [0, 2, 4, 6, 8]
    assert [lv for _, _, lv in frames] == [round((255 - 4 * i) / 4) for i in seen]


def test_close_mid_file_stops_the_reader(tmp_path: Path) -> None:
    clip = numbered_clip(tmp_path / "c.avi", 60, 30.0)
    src = FileSource(clip, 0.0, prefetch=2)
    assert src.read() is not None
    src.close()
    assert not any(t.name.startswith("decode-") and t.is_alive() for t in threading.enumerate())


class FakeCamera:
    """A camera delivering numbered frames every `period_s`, or failing from frame `fail_at` on."""

    def __init__(self, period_s: float, fail_at: int | None = None) -> None:
        self.period_s, self.fail_at, self.n = period_s, fail_at, 0

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return 100.0

    def read(self) -> tuple[bool, Any]:
        time.sleep(self.period_s)
        if self.fail_at is not None and self.n >= self.fail_at:
            return False, None
        self.n += 1
        return True, np.full((H, W, 3), self.n % 256, np.uint8)

    def release(self) -> None:
        pass


def test_live_loop_takes_the_newest_frame_and_counts_what_it_drops() -> None:
    cam = FakeCamera(0.005)
    src = LiveSource(SourceConfig(kind="usb"), opener=lambda: cam)
    try:
        src.wait_open(5)
        first = src.read()
        time.sleep(0.2)  # a slow inference: the camera delivered ~40 frames meanwhile
        second = src.read()
        assert first is not None and second is not None and second.image is not None
        assert second.index - first.index > 10
        assert src.dropped == second.index - first.index - 1
        assert level(second.image) * 4 >= cam.n - 3  # the newest, not the next in a queue
    finally:
        src.close()


def test_live_camera_that_drops_gives_ticks_and_reconnects() -> None:
    cams = [FakeCamera(0.001, fail_at=3), FakeCamera(0.001)]
    src = LiveSource(SourceConfig(kind="usb", reconnect_initial_s=0.05), opener=lambda: cams.pop(0) if cams else None)
    src.TICK_S = 0.2
    try:
        src.wait_open(5)
        deadline = time.monotonic() + 5
        images = ticks = 0
        while time.monotonic() < deadline and (images < 10):
            f = src.read()
            assert f is not None
            if f.image is None:
                ticks += 1
            else:
                images += 1
        assert images >= 10  # frames again after the camera came back
        assert not cams  # the second camera was opened
    finally:
        src.close()
