"""The detector/tracker split: the composition, the tracker settings lookup, and ultralytics'
ByteTrack fed with hand-made boxes (no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.stages.detections import VEHICLE_CLASSES, Boxes, Detections
from edge.stages.detector import Frame
from edge.stages.tracking import DetectAndTrack, TrackerError, open_box_tracker
from wire.payloads import VehicleClass

SIZE = (640, 480)
FRAME = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)


def boxes(*rows: tuple[float, float, float, float, float, VehicleClass]) -> Boxes:
    return Boxes(
        np.array([r[:4] for r in rows], np.float32).reshape(-1, 4),
        np.array([r[4] for r in rows], np.float32),
        tuple(r[5] for r in rows),
        SIZE,
    )


class ListDetector:
    def __init__(self, frames: list[Boxes]) -> None:
        self.frames = iter(frames)

    def detect(self, frame: Frame) -> Boxes:
        return next(self.frames)


class EchoTracker:
    """Gives every box the id of its position, and remembers what it was handed."""

    def __init__(self) -> None:
        self.seen: list[tuple[Boxes, float]] = []
        self.resets = 0

    def update(self, boxes: Boxes, frame: Frame, t: float) -> Detections:
        self.seen.append((boxes, t))
        return Detections(
            boxes.xyxy, boxes.confidence, np.arange(len(boxes), dtype=np.int64), boxes.vehicle_class, boxes.frame_size
        )

    def reset(self) -> None:
        self.resets += 1


def test_composition_clips_to_the_frame_and_drops_boxes_covering_most_of_it() -> None:
    tracker = EchoTracker()
    found = boxes(
        (-20, 400, 60, 500, 0.9, VehicleClass.CAR),  # runs off the bottom-left corner
        (0, 0, 600, 470, 0.8, VehicleClass.TRUCK),  # most of the frame: an empty-road false positive
    )
    both = DetectAndTrack(ListDetector([found]), tracker, max_box_share=0.5)
    dets = both.update(FRAME, 12.5)
    assert tracker.seen[0][1] == 12.5 and len(tracker.seen[0][0]) == 2  # the tracker still sees both
    assert dets.xyxy.tolist() == [[0, 400, 60, 480]]
    assert dets.vehicle_class == (VehicleClass.CAR,)
    assert both.last_inference_ms >= 0 and both.last_tracking_ms >= 0
    both.reset()
    assert tracker.resets == 1


def test_class_ids_index_the_gate_classes() -> None:
    found = boxes((0, 0, 1, 1, 0.5, VehicleClass.BUS), (0, 0, 1, 1, 0.5, VehicleClass.CAR))
    assert [VEHICLE_CLASSES[i] for i in found.class_ids()] == [VehicleClass.BUS, VehicleClass.CAR]
    assert found.select(np.array([False, True])).vehicle_class == (VehicleClass.CAR,)
    with pytest.raises(ValueError):
        Boxes(np.zeros((2, 4), np.float32), np.zeros(1, np.float32), (VehicleClass.CAR,) * 2)


def test_ultralytics_bytetrack_keeps_one_id_per_moving_vehicle() -> None:
    tracker = open_box_tracker("gate_bytetrack.yaml")
    ids: list[list[int]] = []
    for i in range(10):
        frame = boxes(
            (100 + 8 * i, 100, 180 + 8 * i, 160, 0.9, VehicleClass.CAR),
            (400, 300 - 6 * i, 520, 380 - 6 * i, 0.7, VehicleClass.TRUCK),
        )
        dets = tracker.update(frame, FRAME, i / 10)
        ids.append(sorted(dets.track_id.tolist()))
        if len(dets):
            assert set(dets.vehicle_class) == {VehicleClass.CAR, VehicleClass.TRUCK}
    assert ids[-1] == ids[2] and len(ids[-1]) == 2  # confirmed by the second frame, then stable
    tracker.reset()
    assert len(tracker.update(Boxes.empty(SIZE), FRAME, 0.0)) == 0


def test_weak_boxes_only_extend_existing_tracks() -> None:
    tracker = open_box_tracker("gate_bytetrack.yaml")
    for i in range(3):
        tracker.update(boxes((100 + 5 * i, 100, 180 + 5 * i, 160, 0.9, VehicleClass.CAR)), FRAME, i / 10)
    kept = tracker.update(boxes((115, 100, 195, 160, 0.1, VehicleClass.CAR)), FRAME, 0.3)
    assert len(kept) == 1  # 0.1 is under new_track_thresh but extends the car's track
    fresh = open_box_tracker("gate_bytetrack.yaml")
    weak = boxes((300, 300, 360, 340, 0.1, VehicleClass.CAR))
    assert all(len(fresh.update(weak, FRAME, i / 10)) == 0 for i in range(3))  # never starts one


def test_ultralytics_bundled_tracker_names_still_work() -> None:
    tracker = open_box_tracker("bytetrack.yaml")
    for i in range(3):
        dets = tracker.update(boxes((10 + i, 10, 60 + i, 50, 0.9, VehicleClass.CAR)), FRAME, i / 10)
    assert len(dets) == 1


def test_unknown_tracker_settings_fail_with_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrackerError, match="nosuch"):
        open_box_tracker("nosuch.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tracker_type: teleport\n")
    with pytest.raises(TrackerError, match="unknown tracker_type 'teleport'"):
        open_box_tracker(str(bad))
    bad.write_text("- a list\n")
    with pytest.raises(TrackerError, match="tracker_type"):
        open_box_tracker(str(bad))
    bad.write_text("tracker_type: bytetrack\n")
    with pytest.raises(TrackerError, match="incomplete"):
        open_box_tracker(str(bad))


def test_torch_free_bytetrack_keeps_ids_and_follows_time() -> None:
    tracker = open_box_tracker("gate_rf_bytetrack.yaml")
    ids: list[list[int]] = []
    for i in range(10):
        frame = boxes(
            (100 + 8 * i, 100, 180 + 8 * i, 160, 0.9, VehicleClass.CAR),
            (400, 300 - 6 * i, 520, 380 - 6 * i, 0.7, VehicleClass.TRUCK),
        )
        dets = tracker.update(frame, FRAME, i / 30)
        ids.append(sorted(dets.track_id.tolist()))
    assert len(ids[-1]) == 2 and ids[-1] == ids[4]  # confirmed after three frames, then stable
    classes = dict(zip(dets.track_id.tolist(), dets.vehicle_class, strict=True))
    assert sorted(classes.values()) == [VehicleClass.CAR, VehicleClass.TRUCK]
    # unseen for longer than lost_track_s (1 s): the car comes back as a new track
    car = boxes((180, 100, 260, 160, 0.9, VehicleClass.CAR))
    assert all(len(tracker.update(Boxes.empty(SIZE), FRAME, 0.4 + k / 10)) == 0 for k in range(15))
    back = [tracker.update(car, FRAME, 2.0 + k / 30) for k in range(4)]
    assert len(back[-1]) == 1 and back[-1].track_id[0] not in ids[-1]
    tracker.reset()
    assert len(tracker.update(Boxes.empty(SIZE), FRAME, 0.0)) == 0


def test_torch_free_bytetrack_settings_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "rf.yaml"
    bad.write_text("tracker_type: rf_bytetrack\nlost_track_frames: 30\n")
    with pytest.raises(TrackerError, match="lost_track_frames"):
        open_box_tracker(str(bad))
