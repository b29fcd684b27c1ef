"""The durable outbox: sequence numbers, acknowledgement and the disk bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.service.health import HealthReaders, HealthSampler, PipelineFigures
from edge.service.outbox import ROW_OVERHEAD_BYTES, Outbox, OutboxError
from edge.service.runtime import EdgeRuntime
from tests.runtime.helpers import FakePipeline, make_records, unit_config
from wire.payloads import CameraState, HealthMessage, decode_message


def payload(seq: int, size: int = 100) -> bytes:
    head = f'{{"seq":{seq},"pad":"'.encode()
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_seq_is_monotonic_across_restarts_and_rows_leave_only_once_stored(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 1 << 20, clock=lambda: 1000.0)
    seqs = [box.enqueue("t/a", payload) for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert box.mark_acked([1, 2], at=1001.0) == 2
    assert (len(box), box.pending) == (5, 3)  # a PUBACK alone deletes nothing
    assert [r.seq for r in box.peek_after(0, 100)] == [3, 4, 5]  # acked rows are not sent again...
    assert [r.seq for r in box.due_for_resend(0, 1000.5, 100)] == []
    assert [r.seq for r in box.due_for_resend(0, 1001.0, 100)] == [1, 2]  # ...until they are overdue
    assert box.stored(1) == 1  # the server holds seq 1
    assert box.stats().first_seq == 2
    box.close()

    box = Outbox(path, 1 << 20)  # a restart: what was not confirmed is still there, in order, acks kept
    assert [r.seq for r in box.peek_after(0, 100)] == [3, 4, 5]
    assert [r.payload for r in box.peek_after(0, 100)] == [payload(3), payload(4), payload(5)]
    assert [(r.seq, r.acked) for r in box.due_for_resend(0, 2000.0, 100)] == [(2, 1001.0)]
    assert box.enqueue("t/a", payload) == 6  # never reuses a number, even after deletes
    box.mark_acked([3, 4, 5, 6], at=1002.0)
    assert box.stored(6) == 5
    box.close()
    box = Outbox(path, 1 << 20)
    assert len(box) == 0 and box.stats().first_seq == 7 == box.last_seq + 1
    assert box.enqueue("t/a", payload) == 7
    assert box.mark_acked([99], at=1003.0) == 0  # an ack for an unknown (dropped) row is harmless
    assert box.stored(3) == 0  # so is an old confirmation
    with pytest.raises(OutboxError, match="beyond the last seq"):
        box.stored(50)  # about another numbering of this unit id: never deletes anything
    assert len(box) == 1
    box.close()


def test_disk_bound_drops_oldest_first_counts_the_loss_and_health_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    row_bytes = 1000 + len("t/a") + ROW_OVERHEAD_BYTES
    bound = 64 * 1024
    fits = bound // row_bytes
    box = Outbox(path, bound, clock=lambda: 1_999_999_000.0)
    total = fits + 25
    for _ in range(total):
        box.enqueue("t/a", lambda s: payload(s, 1000))
    stats = box.stats()
    assert stats.dropped == total - fits
    assert stats.bytes <= bound
    kept = [r.seq for r in box.peek_after(0, 10_000)]
    assert kept == list(range(total - fits + 1, total + 1))  # the newest survive, contiguous
    box.close()

    box = Outbox(path, bound)  # the loss counter is persisted
    assert box.stats().dropped == total - fits
    sampler = HealthSampler(
        "g1", "u1", 30.0, readers=HealthReaders(lambda: 51.5, lambda: "0x0", lambda: 123.0),
        wall_clock=lambda: 2_000_000_000.0,
    )
    stats = box.stats()
    msg = sampler.sample(box.last_seq + 1, PipelineFigures(9.0, 80.0, CameraState.UP), stats)
    assert isinstance(msg, HealthMessage)
    assert msg.dropped_records == total - fits
    assert msg.outbox_depth == fits
    assert msg.outbox_oldest_s == 1000.0
    assert (msg.cpu_temp_c, msg.throttled, msg.mem_mb) == (51.5, "0x0", 123.0)
    box.close()


def test_runtime_health_reports_drops_when_records_overflow_the_bound(tmp_path: Path) -> None:
    cfg = unit_config(tmp_path, 1, outbox={"max_bytes": 64 * 1024})
    runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes))  # never connected
    records = make_records(150)  # 300 records of ~450 bytes: about twice the bound
    for r in records:
        runtime.enqueue_record(r)
    before = runtime.outbox.stats()
    assert before.dropped > 100
    seq = runtime.send_health()
    rows = runtime.outbox.peek_after(0, 10_000)
    health = decode_message(rows[-1].topic, rows[-1].payload)
    assert isinstance(health, HealthMessage) and health.seq == seq == len(records) + 1
    # health reports the loss as it stood when sampled, just before its own row went in
    assert (health.dropped_records, health.outbox_depth) == (before.dropped, before.depth)
    dropped = runtime.outbox.stats().dropped
    assert dropped == len(records) + 1 - len(rows)  # every missing row is counted
    first_kept = decode_message(rows[0].topic, rows[0].payload)
    assert first_kept.kind == "counts" and first_kept.seq == dropped + 1  # the oldest went first
    runtime.outbox.close()


def test_a_record_the_contract_rejects_is_skipped_and_counting_goes_on(tmp_path: Path) -> None:
    cfg = unit_config(tmp_path, 1)
    runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes), flush_timeout_s=0)
    good = make_records(2)
    # model_copy skips validation, as a pipeline bug could: a count beyond the contract's bound
    bad = good[0].model_copy(update={"frames": 10**9})
    runtime.run(FakePipeline([good[0], bad, *good[1:]]))
    assert runtime.unsendable == 1
    box = Outbox(cfg.outbox.path, cfg.outbox.max_bytes)
    rows = box.peek_after(0, 100)
    assert [r.seq for r in rows] == [1, 2, 3, 4]  # no seq burnt on the rejected one
    box.close()
