"""Motion gating: no inference while nothing moves where the lanes are.

A gate is idle for long stretches (night lulls, a closed lane, a queue standing still for
minutes), and on a Pi every skipped inference is power, heat and headroom for the busy hours. The
lanes' area of each frame is compared, small and blurred, with the same area of the last frame the
detector saw; while the share of changed pixels stays under a threshold, the detector is skipped and
the tracker is fed that frame's boxes again. A stopped queue therefore does not vanish: its tracks,
their queue-zone membership, waits and stationary counts carry over exactly. Any change (a vehicle
creeping forward, headlights, a person) brings inference back at once, and `max_skip_s` forces one
now and then whatever the picture says. Sensor noise and compression flicker count as change, so the
gate fails safe: at worst it never skips.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from edge.config import LaneConfig, MotionGateConfig, RegionConfig
from edge.stages.region import LaneRegion

Image = npt.NDArray[np.uint8]
#: width of the downscaled lanes' area the comparison runs on: cheap, and blind to pixel noise
THUMB_WIDTH = 160


class MotionGate:
    def __init__(self, cfg: MotionGateConfig) -> None:
        self.cfg = cfg
        # the lanes' area with a margin, never "not worth cropping": the gate always looks at the lanes
        self._region = LaneRegion(RegionConfig(mode="lanes", margin=cfg.margin, max_share=1.0))
        self._ref: npt.NDArray[np.int16] | None = None
        self._ref_t = 0.0
        self.skipped = 0
        self.inferred = 0

    def focus(self, lanes: Sequence[LaneConfig]) -> None:
        self._region.focus(lanes)
        self.reset()

    def reset(self) -> None:
        self._ref = None

    def _thumb(self, frame: Image) -> npt.NDArray[np.int16]:
        h, w = frame.shape[:2]
        win = self._region.window(w, h)
        view = frame if win is None else frame[win[1]:win[3], win[0]:win[2]]
        vh, vw = view.shape[:2]
        tw = min(THUMB_WIDTH, vw)
        th = max(1, round(vh * tw / max(1, vw)))
        small = cv2.resize(view, (tw, th), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return np.asarray(cv2.GaussianBlur(gray, (3, 3), 0), dtype=np.int16)

    def needs_inference(self, frame: Image, t: float) -> bool:
        """True when the detector must look at this frame; the frame then becomes the reference."""
        thumb = self._thumb(frame)
        ref = self._ref
        if ref is None or ref.shape != thumb.shape or t - self._ref_t >= self.cfg.max_skip_s or t < self._ref_t:
            changed = True
        else:
            moved = np.abs(thumb - ref) > self.cfg.pixel_change
            changed = float(moved.mean()) > self.cfg.changed_share
        if changed:
            self._ref, self._ref_t = thumb, t
            self.inferred += 1
        else:
            self.skipped += 1
        return changed
