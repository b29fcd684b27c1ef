"""Per-unit seq tracking as pure logic: contiguous high-water mark, gaps, resets, restore, rate limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.stored import StoredTracker
from tests.server.helpers import GATE, counts_message
from wire.payloads import CameraState, HealthMessage, StatusMessage, StoredMessage, UnitState

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def health(seq: int, first: int | None, at_s: float, unit: str = "u1") -> HealthMessage:
    return HealthMessage(gate=GATE, unit=unit, seq=seq, at=T0 + timedelta(seconds=at_s), interval_s=10, fps=5,
                         inference_ms=50, camera=CameraState.UP, outbox_depth=0, mem_mb=100, uptime_s=abs(at_s),
                         outbox_first_seq=first)


def online(last_seq: int, at_s: float, state: UnitState = UnitState.ONLINE) -> StatusMessage:
    return StatusMessage(gate=GATE, unit="u1", seq=last_seq, state=state, at=T0 + timedelta(seconds=at_s),
                         version="1", config_hash="h")


def rec(seq: int) -> object:
    return counts_message("u1", "l1", seq, seq=seq)


def through(t: StoredTracker) -> int | None:
    return t.health()[f"{GATE}/u1"].through_seq


def feed(t: StoredTracker, *messages: object) -> None:
    for m in messages:
        t.on_durable(m)  # type: ignore[arg-type]


def test_nothing_is_acknowledged_before_the_unit_says_what_it_still_holds() -> None:
    t = StoredTracker()
    feed(t, rec(5), rec(6), rec(8))
    assert through(t) is None and t.due(0.0) == []  # 1..4 may still be on their way
    feed(t, health(9, first=5, at_s=10))  # the unit holds nothing older than 5
    assert through(t) == 6  # 7 is missing, 8 and 9 wait above it
    assert t.health()[f"{GATE}/u1"].pending == 2
    assert t.due(0.0) == [((GATE, "u1"), 6, 0, 0)]


def test_in_order_out_of_order_and_redelivered() -> None:
    t = StoredTracker()
    feed(t, health(1, first=1, at_s=0))
    feed(t, rec(2), rec(4), rec(3), rec(3), rec(2), rec(6))
    assert through(t) == 4
    feed(t, rec(5))
    assert through(t) == 6
    assert t.totals() == (0, 0)


def test_seqs_below_the_oldest_held_that_never_arrived_are_gaps() -> None:
    t = StoredTracker()
    feed(t, health(1, first=1, at_s=0), rec(2), rec(5), rec(7))
    feed(t, health(8, first=7, at_s=10))  # 3, 4 and 6 were dropped by the unit: lost for good
    assert through(t) == 8
    assert t.totals() == (3, 0)
    assert t.due(0.0) == [((GATE, "u1"), 8, 3, 0)]


def test_a_unit_still_holding_a_seq_is_waited_for() -> None:
    t = StoredTracker()
    feed(t, health(1, first=1, at_s=0), rec(3), health(4, first=2, at_s=10))  # 2 is in its outbox still
    assert through(t) == 1 and t.totals() == (0, 0)
    feed(t, rec(2))  # re-sent after the broker lost it
    assert through(t) == 4


def test_a_fresh_online_status_below_the_mark_is_a_reset() -> None:
    t = StoredTracker()
    feed(t, health(1, first=1, at_s=0), *(rec(s) for s in range(2, 101)), rec(105))
    assert through(t) == 100
    feed(t, online(100, at_s=20))  # a reconnect: its last seq is where we are
    assert t.totals() == (0, 0)
    feed(t, online(3, at_s=30))  # re-imaged: its seq started again
    assert t.totals() == (4, 1)  # 101..104 were announced (105 arrived) and never stored
    assert t.due(0.0) == [((GATE, "u1"), 0, 4, 1)]  # said at once: the unit must not act on 100
    feed(t, rec(1), rec(2), rec(3), health(4, first=1, at_s=40))
    assert through(t) == 4


def test_a_new_lifes_first_records_ahead_of_its_reset_are_settled_in_it() -> None:
    """Re-imaged, the unit's first records (seq 1..3) can arrive before the status or health that
    shows the reset, looking like re-deliveries; an old re-delivery in between must stay old."""
    t = StoredTracker()
    feed(t, health(1, first=1, at_s=0), *(rec(s) for s in range(2, 41)))
    assert through(t) == 40
    old_copy = counts_message("u1", "l1", 30, seq=30)  # the old life's seq 30, delivered again
    new_life = [counts_message("u1", "l1", 1000 + s, seq=s) for s in (1, 2, 3)]  # windows after the old ones
    feed(t, old_copy, *new_life, health(4, first=1, at_s=10_000))
    assert t.totals() == (0, 1)
    assert through(t) == 4  # 1..3 settled again in the new numbering; 30 is not taken for the new 30


def test_a_fresh_health_at_or_below_the_mark_is_a_reset_and_old_copies_are_not() -> None:
    t = StoredTracker()
    feed(t, health(1, first=1, at_s=0), *(rec(s) for s in range(2, 51)), health(51, first=40, at_s=10))
    assert through(t) == 51
    feed(t, health(30, first=25, at_s=5))  # a re-delivered old copy: older than the last health
    feed(t, online(20, at_s=6))  # an old online status, re-delivered
    feed(t, online(20, at_s=60, state=UnitState.OFFLINE))  # a Last Will carries the seq of its connect
    assert t.totals() == (0, 0) and through(t) == 51
    feed(t, health(1, first=1, at_s=70))  # fresh, and its seq went backwards
    assert t.totals() == (0, 1) and through(t) == 1


def test_restore_from_the_retained_statement_then_carry_on() -> None:
    t = StoredTracker()
    stored = StoredMessage(gate=GATE, unit="u1", through_seq=500, at=T0, gaps=7, resets=1)
    assert t.restore(stored)
    assert through(t) == 500 and t.totals() == (7, 1)
    assert t.due(0.0) == []  # the broker holds exactly this already
    feed(t, rec(499), rec(501), rec(502))
    assert through(t) == 502
    assert not t.restore(stored)  # the same retained copy after a reconnect: counted once
    assert t.totals() == (7, 1)
    feed(t, health(40, first=1, at_s=-3600))  # older than our statement: a re-delivery, not a reset
    assert t.totals() == (7, 1)


def test_a_health_before_the_retained_statement_arrives() -> None:
    t = StoredTracker()
    feed(t, health(600, first=590, at_s=0))
    assert t.restore(StoredMessage(gate=GATE, unit="u1", through_seq=580, at=T0 - timedelta(seconds=5), gaps=2))
    assert through(t) == 589 and t.totals() == (2, 0)


def test_statements_are_rate_limited_per_unit() -> None:
    t = StoredTracker(min_interval_s=1.0)
    feed(t, health(1, first=1, at_s=0))
    assert len(t.due(100.0)) == 1
    feed(t, rec(2))
    assert t.due(100.5) == []
    assert t.due(101.0) == [((GATE, "u1"), 2, 0, 0)]
    assert t.due(103.0) == []  # nothing new


def test_an_unexplained_hole_is_given_up_once_too_much_piles_up_above_it() -> None:
    t = StoredTracker(max_pending=100)
    feed(t, health(1, first=1, at_s=0), *(rec(s) for s in range(3, 105)))
    assert through(t) == 104 and t.totals() == (1, 0)
