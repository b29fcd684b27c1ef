"""Two records with one key: a second piece of a window the unit already emitted is merged with
the first and sent as one record (the later record of a key is always a superset)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.service.ledger import merge_windows, window_key
from edge.service.outbox import Outbox
from edge.service.runtime import EdgeRuntime
from tests.runtime.helpers import START, make_records, unit_config
from wire.payloads import CountsMessage, QueueStats, VehicleClass, WindowRecord, decode_message


def piece(counts: dict[VehicleClass, dict[str, int]], **over: object) -> WindowRecord:
    raw: dict[str, object] = {"gate": "huu-nghi", "unit": "u1", "lane": "l1", "window_start": START,
                              "window_s": 10.0, "counts": counts, **over}
    return WindowRecord.model_validate(raw)


def test_merge_adds_counts_and_combines_the_queue() -> None:
    first = piece({VehicleClass.TRUCK: {"in": 2}, VehicleClass.CAR: {"out": 1}}, frames=40, camera_up=0.4,
                  loop_count=3, queue=QueueStats(length_max=4, length_mean=2.0, stationary_max=3, waits_n=2,
                                                 wait_p50_s=30.0, wait_p90_s=50.0, wait_max_s=55.0,
                                                 clearance_per_min=3.0, expected_wait_s=80.0))
    second = piece({VehicleClass.TRUCK: {"in": 1, "out": 4}}, frames=60, camera_up=0.6,
                   queue=QueueStats(length_max=2, length_mean=1.0, stationary_max=1, waits_n=1, wait_p50_s=60.0,
                                    wait_p90_s=60.0, wait_max_s=60.0, clearance_per_min=6.0))
    m = merge_windows(first, second)
    assert m.key == first.key
    assert m.counts == {VehicleClass.TRUCK: {"in": 3, "out": 4}, VehicleClass.CAR: {"out": 1}}
    assert m.total() == first.total() + second.total()
    assert (m.frames, m.camera_up, m.loop_count) == (100, 1.0, 3)
    q = m.queue
    assert (q.length_max, q.stationary_max, q.waits_n) == (4, 3, 3)
    assert q.length_mean == pytest.approx((2.0 * 4 + 1.0 * 6) / 10)  # weighted by camera time
    assert q.wait_p50_s == pytest.approx(40.0)  # weighted by waits
    assert (q.wait_p90_s, q.wait_max_s) == (60.0, 60.0)
    assert (q.clearance_per_min, q.expected_wait_s) == (6.0, 80.0)  # the latest state, else the earlier
    with pytest.raises(ValueError):  # beyond the contract: rejected like any bad record
        merge_windows(piece({}, frames=60_000), piece({}, frames=60_000))


def test_a_second_piece_is_sent_merged_and_the_held_first_piece_is_rebuilt(tmp_path: Path) -> None:
    cfg = unit_config(tmp_path, 1)
    runtime = EdgeRuntime(cfg, Outbox.from_config(cfg.outbox))  # never connected: both rows stay
    a, b = make_records(1, lanes=1)[0], make_records(1, lanes=1, first=3)[0]
    later = a.model_copy(update={"counts": {VehicleClass.BUS: {"in": 5}}, "frames": 7})
    assert [runtime.enqueue_record(r) for r in (a, b, later)] == [1, 2, 3]
    assert runtime.records_merged == 1
    rows = {r.seq: decode_message(r.topic, r.payload) for r in runtime.outbox.peek_after(0, 10)}
    merged = rows[3]
    assert isinstance(merged, CountsMessage) and merged.key == a.key
    assert merged.record() == merge_windows(a, later)
    # the earlier row of that key, still held, now says the same (under its own seq): whichever copy
    # the server gets last, the point ends up right
    first = rows[1]
    assert isinstance(first, CountsMessage) and first.seq == 1 and first.record() == merged.record()
    assert isinstance(rows[2], CountsMessage) and rows[2].record() == b
    runtime.outbox.close()

    # The memory survives a restart; a window older than ledger_s is forgotten (no merge).
    box = Outbox(cfg.outbox.path, cfg.outbox.max_bytes, ledger_s=60.0)
    assert box.emitted(window_key(a)) is not None
    runtime = EdgeRuntime(cfg, box)
    far = make_records(1, lanes=1, first=100)[0]  # 1,000 s later
    runtime.enqueue_record(far)
    assert box.emitted(window_key(a)) is None  # older than 60 s before the newest window
    runtime.enqueue_record(a)
    assert runtime.records_merged == 0
    box.close()
