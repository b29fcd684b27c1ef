"""Alert rules on the stream: pure logic, driven by record timestamps (no clock, no broker)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.alerts import (
    CAMERA_DOWN,
    CONGESTED,
    GATE_LEVEL,
    LOOP_MISMATCH,
    STALLED,
    UNIT_OFFLINE,
    AlertEngine,
    AlertsConfig,
)
from tests.server.helpers import BASE, GATE, counts_message
from wire.payloads import AlertLevel, CameraState, HealthMessage, StatusMessage, UnitState


def engine(**rules) -> AlertEngine:
    raw = {"rules": {"congested": {"raise_at": 8, "raise_for_s": 30, "clear_below": 4, "clear_for_s": 30},
                     **rules}, "level": {"yellow": 100, "orange": 200, "red": 300}}
    return AlertEngine(AlertsConfig.model_validate(raw))


def feed(e: AlertEngine, queues: Sequence[float], lane: str = "l1", crossings: int | None = 2, first: int = 0, **kw):
    """Feed one window per queue value; return (window index, event) pairs."""
    out = []
    for k, q in enumerate(queues):
        i = first + k
        for ev in e.on_message(counts_message("u1", lane, i, queue=q, crossings=crossings, **kw)):
            out.append((i, ev))
    return out


def test_congested_raises_when_held_for_raise_for_s_and_clears_with_hysteresis() -> None:
    e = engine()
    # 10 s windows: 3 windows at >= 8 make 30 s; a dip to 7 resets the count
    queues = [2, 9, 9, 7, 8, 9, 10, 12, 6, 5, 7, 3, 3, 2, 2, 1]
    events = [(i, ev) for i, ev in feed(e, queues) if ev.rule == CONGESTED]
    assert [(i, ev.active) for i, ev in events] == [(6, True), (13, False)]  # 11, 12, 13 below 4: 30 s
    raised, cleared = events[0][1], events[1][1]
    assert raised.at == BASE + timedelta(seconds=70)  # the end of window 6: stream time, not wall clock
    assert raised.level == AlertLevel.ORANGE
    assert cleared.at == BASE + timedelta(seconds=140)


def test_congested_does_not_flap_around_the_threshold() -> None:
    e = engine()
    hovering = [8, 9, 8, 9, 7, 9, 5, 9, 6, 8, 4, 9, 5, 8, 7, 9] * 3
    events = [ev for _, ev in feed(e, hovering) if ev.rule == CONGESTED]
    assert [ev.active for ev in events] == [True]  # raised once, never cleared while it hovers >= 4


def test_redelivered_and_late_windows_do_not_change_state() -> None:
    e = engine()
    feed(e, [9, 9, 9])
    assert CONGESTED in {a.rule for a in e.state(GATE, "l1", BASE).active}
    # the same windows again (at-least-once delivery) with low queues must be ignored
    assert feed(e, [0, 0, 0]) == []
    assert CONGESTED in {a.rule for a in e.state(GATE, "l1", BASE).active}


def test_a_gap_in_windows_restarts_the_duration() -> None:
    e = engine()
    events = feed(e, [9, 9]) + feed(e, [9, 9], first=5)
    assert [ev for _, ev in events if ev.rule == CONGESTED] == []
    assert [i for i, ev in feed(e, [9], first=7) if ev.rule == CONGESTED] == [7]


def test_stalled_lane_needs_queue_without_crossings() -> None:
    e = engine(stalled={"min_queue": 2, "for_s": 60})
    # queued but moving: no stall; then 6 windows (60 s) queued without crossings: stall
    assert [ev for _, ev in feed(e, [3] * 5, crossings=1) if ev.rule == STALLED] == []
    ev = [(i, x) for i, x in feed(e, [3] * 6, crossings=0, first=5) if x.rule == STALLED]
    assert [(i, x.active) for i, x in ev] == [(10, True)]
    assert ev[0][1].level == AlertLevel.RED
    cleared = [(i, x.active) for i, x in feed(e, [3], crossings=2, first=11) if x.rule == STALLED]
    assert cleared == [(11, False)]


def test_camera_down_from_records_and_from_health() -> None:
    e = engine()
    assert [x.active for _, x in feed(e, [0, 0], camera_up=0.2) if x.rule == CAMERA_DOWN] == [True]
    assert [x.active for _, x in feed(e, [0], camera_up=1.0, first=2) if x.rule == CAMERA_DOWN] == [False]
    health = HealthMessage(gate=GATE, unit="u1", seq=9, at=BASE + timedelta(seconds=40), interval_s=10, fps=0,
                           inference_ms=0, camera=CameraState.DOWN, outbox_depth=0, mem_mb=1, uptime_s=1)
    evs = e.on_message(health)
    assert [(x.rule, x.active, x.lane) for x in evs] == [(CAMERA_DOWN, True, "l1")]


def test_unit_offline_from_status_and_from_silence() -> None:
    e = engine()
    feed(e, [0], lane="l1")
    feed(e, [0], lane="l2")
    off = StatusMessage(gate=GATE, unit="u1", seq=5, state=UnitState.OFFLINE, at=BASE + timedelta(seconds=15),
                        version="1", config_hash="x")
    evs = e.on_message(off)
    assert sorted((x.lane, x.rule, x.active) for x in evs) == [("l1", UNIT_OFFLINE, True), ("l2", UNIT_OFFLINE, True)]
    on = off.model_copy(update={"state": UnitState.ONLINE, "at": BASE + timedelta(seconds=20), "seq": 6})
    assert sorted((x.lane, x.active) for x in e.on_message(on)) == [("l1", False), ("l2", False)]
    # silence: health every 10 s, then nothing for three intervals of stream time
    h = HealthMessage(gate=GATE, unit="u1", seq=7, at=BASE + timedelta(seconds=20), interval_s=10, fps=5,
                      inference_ms=50, camera=CameraState.UP, outbox_depth=0, mem_mb=1, uptime_s=1)
    assert e.on_message(h) == []
    assert e.check_silence(BASE + timedelta(seconds=49)) == []
    evs = e.check_silence(BASE + timedelta(seconds=50))
    assert sorted((x.lane, x.rule, x.active) for x in evs) == [("l1", UNIT_OFFLINE, True), ("l2", UNIT_OFFLINE, True)]
    assert evs[0].at == BASE + timedelta(seconds=50)
    assert e.check_silence(BASE + timedelta(seconds=90)) == []  # raised once
    h2 = h.model_copy(update={"at": BASE + timedelta(seconds=95), "seq": 8})
    assert sorted((x.lane, x.active) for x in e.on_message(h2)) == [("l1", False), ("l2", False)]


def test_loop_sensor_disagreement() -> None:
    e = engine(loop_mismatch={"max_share": 0.2, "over_windows": 3, "min_vehicles": 10})
    # camera counts 5/window; the loop agrees, then sees twice as many
    assert [x for _, x in feed(e, [0] * 3, crossings=5, loop_count=5) if x.rule == LOOP_MISMATCH] == []
    evs = [(i, x.active) for i, x in feed(e, [0] * 3, crossings=5, loop_count=10, first=3) if x.rule == LOOP_MISMATCH]
    assert evs == [(3, True)]  # (5+5+10) vs 15: 25% > 20%
    evs = [(i, x.active) for i, x in feed(e, [0] * 3, crossings=5, loop_count=5, first=6) if x.rule == LOOP_MISMATCH]
    assert evs == [(8, False)]  # window 7 still sums loop 20 vs camera 15


@pytest.mark.parametrize(("queues", "level"), [((5, 5), AlertLevel.GREEN), ((60, 50), AlertLevel.YELLOW),
                                              ((150, 60), AlertLevel.ORANGE), ((200, 150), AlertLevel.RED)])
def test_gate_level_colour_scale(queues: tuple[int, int], level: AlertLevel) -> None:
    e = engine(congested={"enabled": False}, stalled={"enabled": False})
    feed(e, [queues[0]], lane="l1")
    feed(e, [queues[1]], lane="l2")
    assert e.gate_level(GATE) == level
    state = e.state(GATE, "l1", BASE)
    assert state.level == level
    assert (GATE_LEVEL in {a.rule for a in state.active}) == (level != AlertLevel.GREEN)


def test_gate_level_steps_down_only_below_a_margin() -> None:
    e = engine(congested={"enabled": False}, stalled={"enabled": False})
    feed(e, [120])
    assert e.gate_level(GATE) == AlertLevel.YELLOW
    feed(e, [95, 85], first=1)  # under 100 but not under 80: stays yellow
    assert e.gate_level(GATE) == AlertLevel.YELLOW
    feed(e, [70], first=3)
    assert e.gate_level(GATE) == AlertLevel.GREEN


def test_per_gate_and_lane_overrides_merge_onto_defaults() -> None:
    cfg = AlertsConfig.model_validate({
        "rules": {"congested": {"raise_at": 8, "clear_below": 4}},
        "gates": {GATE: {"rules": {"congested": {"raise_for_s": 10}},
                         "lanes": {"l2": {"congested": {"raise_at": 20}}}}},
    })
    l1, l2 = cfg.lane_rules(GATE, "l1"), cfg.lane_rules(GATE, "l2")
    assert (l1.congested.raise_at, l1.congested.raise_for_s, l1.congested.clear_below) == (8, 10, 4)
    assert (l2.congested.raise_at, l2.congested.raise_for_s, l2.congested.clear_below) == (20, 10, 4)
    other = cfg.lane_rules("tan-thanh", "l2")
    assert (other.congested.raise_at, other.congested.raise_for_s) == (8, 60)


def test_replay_is_deterministic() -> None:
    queues = [0, 3, 9, 12, 15, 9, 9, 2, 1, 0, 0, 0, 9, 9, 9, 9] * 4
    runs = []
    for _ in range(2):
        e = engine()
        runs.append([(i, ev) for i, ev in feed(e, queues)])
    assert runs[0] == runs[1]
    assert len(runs[0]) >= 4


def test_restored_state_keeps_a_congested_lane_raised_until_its_hysteresis_clears() -> None:
    e = engine()
    feed(e, [9, 9, 9, 9])
    retained = e.state(GATE, "l1", BASE + timedelta(seconds=40))
    assert CONGESTED in {a.rule for a in retained.active}

    after_restart = engine()
    assert after_restart.restore(retained)
    # the queue is still long-ish (>= clear_below): stays raised, nothing re-raised or cleared
    assert [ev for _, ev in feed(after_restart, [6, 5], first=4)] == []
    assert after_restart.state(GATE, "l1", BASE).level == AlertLevel.ORANGE
    cleared = [(i, ev.active) for i, ev in feed(after_restart, [2, 2, 2], first=6) if ev.rule == CONGESTED]
    assert cleared == [(8, False)]
    # live state wins over a late retained copy
    assert not after_restart.restore(retained)


@settings(max_examples=200, deadline=None)
@given(queues=st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=80))
def test_congested_alternates_and_only_fires_after_its_hold_time(queues: list[int]) -> None:
    """For any queue sequence: raise/clear alternate, a raise follows 30 s >= 8, a clear 30 s < 4."""
    e = engine(stalled={"enabled": False})
    events = [(i, ev.active) for i, ev in feed(e, queues) if ev.rule == CONGESTED]
    assert [a for _, a in events] == [k % 2 == 0 for k in range(len(events))]
    for i, active in events:
        window = queues[max(0, i - 2): i + 1]
        assert len(window) == 3
        assert all(q >= 8 for q in window) if active else all(q < 4 for q in window)
