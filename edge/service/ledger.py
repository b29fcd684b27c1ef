"""One record per window: merging a second piece of a window the unit already emitted.

A window is keyed by (unit, lane, window_start), and the server writes a record to the point of
that key. Two different records for one key happen when the unit restarts inside a window (the
SIGTERM flush emitted the first part, the new process emits the rest) or when the clock steps
back. Sent as they are, the second would overwrite the first, or mix with it field by field into a
point whose total disagrees with its counts. So the outbox remembers what it emitted per key for
`outbox.ledger_s` (the ledger), and a second piece is merged into the first and sent again as one
complete record: the later record of a key is always a superset of the earlier one, and writing
it over the earlier point is right whether the server replaces the point or merges fields.
"""

from __future__ import annotations

from wire.payloads import QueueStats, WindowRecord


def window_key(record: WindowRecord) -> str:
    return f"{record.lane}@{record.window_start.timestamp():.3f}"


def merge_windows(first: WindowRecord, second: WindowRecord) -> WindowRecord:
    """The record of one window observed in two pieces (`second` is the later one).

    Counts, frames, waits and loop counts add up; maxima take the larger; the mean queue length
    is weighted by each piece's camera time. Percentiles of waits cannot be merged exactly from
    percentiles: the median is weighted by each piece's number of waits, the 90th percentile
    and the maximum take the larger. Clearance and expected wait are the latest state, so the
    second piece's, unless it has none. A sum beyond the contract's bounds raises ValueError,
    like any record the contract rejects.
    """
    counts: dict[str, dict[str, int]] = {}
    for rec in (first, second):
        for cls, dirs in rec.counts.items():
            merged = counts.setdefault(cls, {})
            for direction, n in dirs.items():
                merged[direction] = merged.get(direction, 0) + n
    window_s = max(first.window_s, second.window_s)
    up_a, up_b = first.camera_up * first.window_s, second.camera_up * second.window_s
    qa, qb = first.queue, second.queue
    mean = (
        (qa.length_mean * up_a + qb.length_mean * up_b) / (up_a + up_b)
        if up_a + up_b > 0
        else max(qa.length_mean, qb.length_mean)
    )
    waits = qa.waits_n + qb.waits_n
    p50s = [(q.wait_p50_s, q.waits_n) for q in (qa, qb) if q.wait_p50_s is not None and q.waits_n]
    queue = QueueStats(
        length_max=max(qa.length_max, qb.length_max),
        length_mean=round(mean, 3),
        stationary_max=max(qa.stationary_max, qb.stationary_max),
        waits_n=waits,
        wait_p50_s=round(sum(p * n for p, n in p50s) / sum(n for _, n in p50s), 2) if p50s else None,
        wait_p90_s=_max(qa.wait_p90_s, qb.wait_p90_s),
        wait_max_s=_max(qa.wait_max_s, qb.wait_max_s),
        clearance_per_min=qb.clearance_per_min if qb.clearance_per_min is not None else qa.clearance_per_min,
        expected_wait_s=qb.expected_wait_s if qb.expected_wait_s is not None else qa.expected_wait_s,
    )
    loops = None
    if first.loop_count is not None or second.loop_count is not None:
        loops = (first.loop_count or 0) + (second.loop_count or 0)
    return WindowRecord.model_validate({
        "gate": second.gate,
        "unit": second.unit,
        "lane": second.lane,
        "window_start": second.window_start,
        "window_s": window_s,
        "counts": counts,
        "queue": queue,
        "frames": first.frames + second.frames,
        "camera_up": round(min(1.0, (up_a + up_b) / window_s), 4),
        "loop_count": loops,
    })


def _max(a: float | None, b: float | None) -> float | None:
    present = [v for v in (a, b) if v is not None]
    return max(present) if present else None
