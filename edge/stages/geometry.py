"""Lane geometry in pixels: which side of a counting line a point is on, and zone membership.

Config stores normalised coordinates so one config survives a change of camera resolution;
geometry is resolved to pixels once the first frame tells us the size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import LineConfig, Point


def side_names(a: Point, b: Point) -> tuple[str, str]:
    """Plain names (down/up/right/left) for the two directions across a line a->b.

    The first name is motion along the line's clockwise normal on screen (y grows downwards),
    which is the direction `LineGeometry` reports as index 0.
    """
    dx, dy = b[0] - a[0], b[1] - a[1]
    nx, ny = -dy, dx  # clockwise on screen
    if abs(ny) >= abs(nx):
        return ("down", "up") if ny > 0 else ("up", "down")
    return ("right", "left") if nx > 0 else ("left", "right")


@dataclass(frozen=True, slots=True)
class LineGeometry:
    ax: float
    ay: float
    ux: float  # unit vector a->b
    uy: float
    length: float
    band: float  # px
    diag: float  # px

    @classmethod
    def from_config(cls, line: LineConfig, width: int, height: int) -> LineGeometry:
        ax, ay = line.a[0] * width, line.a[1] * height
        bx, by = line.b[0] * width, line.b[1] * height
        length = math.hypot(bx - ax, by - ay)
        diag = math.hypot(width, height)
        return cls(ax, ay, (bx - ax) / length, (by - ay) / length, length, line.band * diag, diag)

    def signed_distance(self, x: float, y: float) -> float:
        """> 0 on the side the clockwise normal points to (direction index 0 moves into it)."""
        return self.ux * (y - self.ay) - self.uy * (x - self.ax)

    def along(self, x: float, y: float) -> float:
        """Position of the point's projection along the segment: 0 at a, 1 at b."""
        return (self.ux * (x - self.ax) + self.uy * (y - self.ay)) / self.length

    def travel_extents(self, width: float, height: float) -> tuple[float, float]:
        """An upright box's extent along the direction of travel (the line's normal) and across it:
        for a line across a road, a truck's box is long along travel whatever its size in pixels."""
        along = abs(self.uy) * width + abs(self.ux) * height
        across = abs(self.ux) * width + abs(self.uy) * height
        return along, across

    def side(self, x: float, y: float) -> int:
        """+1 / -1 beyond the tolerance band, 0 inside it."""
        d = self.signed_distance(x, y)
        if d > self.band:
            return 1
        if d < -self.band:
            return -1
        return 0


class Zone:
    """A queue-zone polygon in pixels."""

    def __init__(self, points: list[Point], width: int, height: int) -> None:
        self.poly = np.array([(x * width, y * height) for x, y in points], dtype=np.float32).reshape(-1, 1, 2)

    def contains(self, x: float, y: float) -> bool:
        return cv2.pointPolygonTest(self.poly, (x, y), False) >= 0
