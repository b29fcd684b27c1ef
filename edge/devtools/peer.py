"""The peer gatewatch is measured against: Ultralytics' own `solutions.ObjectCounter`.

Run as a user following the Ultralytics guide would: `ObjectCounter` with its own defaults
(all 80 COCO classes, confidence 0.25, its annotator drawing every frame) plus the clip's counting
line, `yolov8n.pt` at 640 and ByteTrack, fed every frame of a plain OpenCV read loop in the same
thread. Its counts are read per vehicle class and direction, so they compare with the hand counts
and with gatewatch row by row, and its frames/s comes from the same run as gatewatch's.

Its direction rule: for a line closer to horizontal, "IN" is moving down the image; for a line
closer to vertical, "IN" is moving right.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.devtools.conditions import Condition
from edge.devtools.truth import CLASSES, CSV_CLASS, EvalResult, TruthRow
from edge.stages.capture import FileSource

PEER_IMGSZ = 640
PEER_TRACKER = "bytetrack.yaml"


def _in_direction(row: TruthRow) -> str:
    (x1, y1), (x2, y2) = row.line
    return "right" if abs(x1 - x2) < abs(y1 - y2) else "down"


def peer_evaluate(
    footage: Path,
    model: Path,
    rows: list[TruthRow],
    condition: Condition | None = None,
    on_frame: Callable[[], None] | None = None,
) -> list[EvalResult]:
    """Replay each clip once per line through a fresh ObjectCounter and score every row for it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import solutions
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.ERROR)  # it warns "No tracks found." on every empty frame
    results: list[EvalResult] = []
    groups: dict[tuple[str, object], list[TruthRow]] = {}
    for row in rows:
        groups.setdefault((row.video, row.line), []).append(row)
    try:
        for (video, _), group in groups.items():
            source = FileSource(
                footage / video, 0.0, rate=condition.fps if condition else None,
                transform=condition.transform if condition else None, prefetch=0,
            )
            counter: Any = None
            frames = 0
            wall = 0.0
            try:
                frame = source.read()
                if frame is not None and frame.image is not None:
                    h, w = frame.image.shape[:2]
                    (ax, ay), (bx, by) = group[0].line
                    counter = solutions.ObjectCounter(
                        model=str(model), region=[(ax * w, ay * h), (bx * w, by * h)], imgsz=PEER_IMGSZ,
                        tracker=PEER_TRACKER, show=False, verbose=False,
                    )
                t0 = time.perf_counter()  # the loop only, as gatewatch's: model loading is start-up
                while frame is not None:
                    assert frame.image is not None
                    counter(frame.image)
                    frames += 1
                    if on_frame is not None:
                        on_frame()
                    frame = source.read()
                wall = time.perf_counter() - t0
            finally:
                source.close()
            counts = dict(counter.classwise_count) if counter is not None else {}
            for row in group:
                key = "IN" if row.direction == _in_direction(row) else "OUT"
                by_class = {c: int(counts.get(CSV_CLASS[c], {}).get(key, 0)) for c in CLASSES}
                results.append(EvalResult(
                    row, sum(by_class.values()), by_class, frames,
                    source.frame_count / source.fps if source.fps else 0.0, source.frame_count, (), wall,
                ))
    finally:
        LOGGER.setLevel(level)
    return results
