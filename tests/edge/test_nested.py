"""One vehicle, one box: parts of a vehicle found as vehicles of their own are dropped."""

from __future__ import annotations

import numpy as np
import pytest

from edge.stages.detections import Boxes, drop_nested
from wire.payloads import VehicleClass

CAR = VehicleClass.CAR


def boxes(*rows: tuple[float, float, float, float, float]) -> Boxes:
    return Boxes(
        np.array([r[:4] for r in rows], np.float32).reshape(-1, 4),
        np.array([r[4] for r in rows], np.float32),
        (CAR,) * len(rows),
        (640, 360),
    )


@pytest.mark.parametrize(
    "rows, kept",
    [
        # a car's side found as a narrow box of its own, weaker: dropped
        ([(238, 132, 303, 181, 0.70), (235, 142, 250, 168, 0.13)], [0]),
        # the part is the more confident one: the whole vehicle is not a part of it, both stay
        ([(238, 132, 303, 181, 0.30), (235, 142, 250, 168, 0.60)], [0, 1]),
        # two cars side by side, slightly overlapping: both stay
        ([(100, 100, 160, 150, 0.8), (150, 105, 210, 155, 0.7)], [0, 1]),
        # a car half hidden behind a truck, less than the share inside: stays
        ([(100, 50, 300, 200, 0.9), (250, 120, 340, 190, 0.6)], [0, 1]),
        # a weak box inside a dropped part is judged against the kept vehicle only
        ([(0, 0, 100, 100, 0.9), (10, 10, 40, 40, 0.5), (12, 12, 30, 30, 0.4)], [0]),
        ([(0, 0, 100, 100, 0.9)], [0]),
    ],
    ids=["side of a car", "part more confident", "side by side", "half hidden", "chain", "single"],
)
def test_nested_boxes(rows: list[tuple[float, float, float, float, float]], kept: list[int]) -> None:
    found = boxes(*rows)
    out = drop_nested(found, 0.7)
    assert out.xyxy.tolist() == found.xyxy[kept].tolist()
