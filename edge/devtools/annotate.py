"""Annotated video for developers tuning lanes: boxes, track ids, lines, bands, zones, counts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge import EdgeError
from edge.config import UnitConfig
from edge.stages.capture import Frame
from edge.stages.counting import Crossing
from edge.stages.detections import Detections
from edge.stages.queues import QueueSnapshot

COLOURS = {"truck": (0, 140, 255), "bus": (255, 0, 255), "car": (0, 220, 0), "motorbike": (255, 200, 0)}


def draw_lanes(image: cv2.typing.MatLike, cfg: UnitConfig) -> None:
    """Lines, their tolerance bands and queue zones; shared with the calibration helper."""
    h, w = image.shape[:2]
    diag = (w * w + h * h) ** 0.5
    for lane in cfg.lanes:
        a = (int(lane.line.a[0] * w), int(lane.line.a[1] * h))
        b = (int(lane.line.b[0] * w), int(lane.line.b[1] * h))
        if lane.queue_zone:
            pts = [(int(x * w), int(y * h)) for x, y in lane.queue_zone]
            for p, q in zip(pts, pts[1:] + pts[:1], strict=True):
                cv2.line(image, p, q, (255, 255, 0), 1)
        band = max(1, int(lane.line.band * diag))
        cv2.line(image, a, b, (0, 0, 120), 2 * band + 1)  # the tolerance band
        cv2.line(image, a, b, (0, 0, 255), 2)
        cv2.putText(image, lane.id, (a[0] + 4, a[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)


class VideoAnnotator:
    def __init__(self, path: Path, cfg: UnitConfig, fps: float) -> None:
        self.path, self.cfg, self.fps = path, cfg, fps
        self.writer: cv2.VideoWriter | None = None
        self.counts: dict[str, int] = {}

    def __call__(
        self, frame: Frame, dets: Detections, crossings: list[Crossing], snapshots: dict[str, QueueSnapshot]
    ) -> None:
        if frame.image is None:
            return
        img = frame.image.copy()
        h, w = img.shape[:2]
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise EdgeError(f"cannot write video {self.path}")
        overlay = img.copy()
        draw_lanes(overlay, self.cfg)
        img = cv2.addWeighted(overlay, 0.6, img, 0.4, 0).astype(np.uint8)
        for k in range(len(dets)):
            x1, y1, x2, y2 = (int(v) for v in dets.xyxy[k])
            cls = dets.vehicle_class[k].value
            colour = COLOURS.get(cls, (200, 200, 200))
            cv2.rectangle(img, (x1, y1), (x2, y2), colour, 2)
            cv2.circle(img, ((x1 + x2) // 2, y2), 3, colour, -1)
            cv2.putText(
                img,
                f"#{int(dets.track_id[k])} {cls}",
                (x1, max(12, y1 - 4)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                colour,
                1,
            )
        for c in crossings:
            key = f"{c.lane} {c.direction} {c.vehicle_class.value}"
            self.counts[key] = self.counts.get(key, 0) + 1
        lines = [f"{k}: {n}" for k, n in sorted(self.counts.items())]
        lines += [f"{lane} queue {s.length} (still {s.stationary})" for lane, s in snapshots.items()]
        for i, text in enumerate(lines):
            cv2.putText(img, text, (8, 18 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2)
            cv2.putText(img, text, (8, 18 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        self.writer.write(img)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
