"""One vehicle, one box: parts of a vehicle found as vehicles of their own are dropped."""

from __future__ import annotations

import numpy as np
import pytest

from edge.stages.detections import Boxes, drop_nested, drop_wrapping
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


@pytest.mark.parametrize(
    "rows, kept",
    [
        # degirum in the dark: a looser, weaker box round a car (IoU 0.68, just under NMS's 0.7): dropped
        ([(506, 209, 588, 307, 0.53), (480, 209, 587, 317, 0.27)], [0]),
        # the looser box is the more confident one: the tight box is nested in it, not wrapped; both stay here
        ([(506, 209, 588, 307, 0.27), (480, 209, 587, 317, 0.53)], [0, 1]),
        # a weak box round a car and much more besides (IoU under 0.5): a different thing, stays
        ([(100, 100, 160, 150, 0.8), (60, 60, 200, 200, 0.3)], [0, 1]),
        # a car one behind another in a queue, overlapping: neither holds 90 % of the other, both stay
        ([(100, 100, 160, 150, 0.8), (105, 80, 165, 135, 0.5)], [0, 1]),
        # two cars side by side, slightly overlapping: both stay
        ([(100, 100, 160, 150, 0.8), (150, 105, 210, 155, 0.7)], [0, 1]),
    ],
    ids=["loose duplicate", "loose one stronger", "much larger", "queue", "side by side"],
)
def test_wrapping_duplicates(rows: list[tuple[float, float, float, float, float]], kept: list[int]) -> None:
    got = drop_wrapping(boxes(*rows), 0.5)
    want = boxes(*[rows[i] for i in kept])
    assert np.array_equal(got.xyxy, want.xyxy)
