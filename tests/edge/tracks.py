"""Synthetic track sequences for unit tests of the pure counting logic."""

from __future__ import annotations

from collections.abc import Iterable

from edge.stages.detections import Detections
from wire.payloads import VehicleClass

SIZE = (1000, 1000)
BOX_W, BOX_H = 80, 60

# one observation: (track_id, x, y) of the box's bottom-centre, optional class
Obs = tuple[int, float, float] | tuple[int, float, float, VehicleClass]


def frame(observations: Iterable[Obs], conf: float = 0.9, box: tuple[float, float] | None = None) -> Detections:
    """One frame of tracked boxes; `box` is (width, height), default BOX_W x BOX_H."""
    bw, bh = box or (BOX_W, BOX_H)
    boxes, ids, classes = [], [], []
    for o in observations:
        tid, x, y = o[0], o[1], o[2]
        cls = o[3] if len(o) > 3 else VehicleClass.CAR
        boxes.append((x - bw / 2, y - bh, x + bw / 2, y))
        ids.append(tid)
        classes.append(cls)
    return Detections.from_lists(boxes, ids, classes, [conf] * len(ids), SIZE)


def path(tid: int, ys: Iterable[float], x: float = 500.0, cls: VehicleClass = VehicleClass.CAR) -> list[list[Obs]]:
    return [[(tid, x, y, cls)] for y in ys]


def merge(*tracks: list[list[Obs]]) -> list[list[Obs]]:
    n = max(len(t) for t in tracks)
    return [[o for t in tracks if i < len(t) for o in t[i]] for i in range(n)]
