"""A congested lane through real mosquitto and influxd: raised on time, cleared after draining, no flapping."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

from server.app import Server, running
from tests.fixtures.procs import wait_for
from tests.server.helpers import BASE, GATE, Listener, Publisher, counts_message, publish_all, server_config
from wire.payloads import AlertLevel, AlertMessage

# queue per 10 s window: builds up, hovers around the thresholds, drains
QUEUES = [0, 2, 5, 9, 10, 12, 7, 11, 9, 6, 5, 4, 6, 3, 2, 1, 0, 0, 0, 0]
RAISE_AT, CLEAR_BELOW, HOLD_S = 9, 4, 20


def test_congested_lane_raises_and_clears_once(tmp_path: Path, mosquitto, influxd) -> None:
    cfg = server_config(tmp_path, mosquitto.port, influxd.url, alerts={
        "silence_wall_clock": False, "valid_s": 60,
        "rules": {"congested": {"raise_at": RAISE_AT, "raise_for_s": HOLD_S, "clear_below": CLEAR_BELOW,
                                "clear_for_s": HOLD_S},
                  "stalled": {"enabled": False}},
    })
    alerts = Listener(mosquitto.port, f"gatewatch/v1/{GATE}/l1/alert", "alert-watch")
    messages = [counts_message("u1", "l1", i, queue=q, crossings=3) for i, q in enumerate(QUEUES)]
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        publish_all(mosquitto.port, messages)
        wait_for(lambda: server.health.stored >= len(messages), 30, "records stored")
    # the threshold is first met by window 3 (queue 9) and held through window 4: raised at window 4's end
    raise_at = BASE + timedelta(seconds=50)
    # below 4 from window 13 on: held 20 s at the end of window 14
    clear_at = BASE + timedelta(seconds=150)

    states = [AlertMessage.model_validate_json(p) for _, p, _ in alerts.snapshot()]
    congested = [any(a.rule == "congested" for a in s.active) for s in states]
    transitions = [b for a, b in zip([False, *congested], congested, strict=False) if a != b]
    assert transitions == [True, False], f"flapping or missing: {congested}"
    raised = next(s for s in states if any(a.rule == "congested" for a in s.active))
    assert raised.level == AlertLevel.ORANGE
    assert next(a for a in raised.active if a.rule == "congested").since == raise_at
    assert raised.expected_wait_s is not None  # queue / clearance rate from the record
    alerts.close()

    # retained: a unit that connects now reads the current (cleared) state
    late = Listener(mosquitto.port, f"gatewatch/v1/{GATE}/l1/alert", "late-unit")
    wait_for(lambda: bool(late.snapshot()), 10, "retained alert state")
    _topic, payload, retained = late.snapshot()[0]
    assert retained
    final = AlertMessage.model_validate_json(payload)
    assert final.level == AlertLevel.GREEN and final.active == []
    late.close()

    rows = influxd.rows("SELECT * FROM alerts WHERE rule = 'congested'")
    assert [(r["active"], r["level"], r["lane"]) for r in rows] == [(True, "orange", "l1"), (False, "orange", "l1")]
    ns = [int(r["time"]) for r in rows]
    assert ns == [int(raise_at.timestamp()) * 10**9, int(clear_at.timestamp()) * 10**9]
    assert all(json.dumps(r["text"]) for r in rows)


def test_alert_state_is_republished_within_half_its_validity(tmp_path: Path, mosquitto, influxd) -> None:
    import time

    cfg = server_config(tmp_path, mosquitto.port, influxd.url, alerts={"silence_wall_clock": False, "valid_s": 2})
    watch = Listener(mosquitto.port, f"gatewatch/v1/{GATE}/l2/alert", "stale-watch")
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        pub = Publisher(mosquitto.port)
        pub.send_message(counts_message("u1", "l2", 0))
        pub.close()
        wait_for(lambda: bool(watch.snapshot()), 10, "the first alert state")
        time.sleep(3.2)  # no traffic at all
    states = [AlertMessage.model_validate_json(p) for _, p, _ in watch.snapshot()]
    watch.close()
    assert len(states) >= 3  # first publish + republished every valid_s/2 = 1 s
    stamps = [s.at for s in states]
    # every copy arrives before the previous one goes stale on the lane light (valid_s)
    assert all((b - a).total_seconds() < 2 for a, b in itertools.pairwise(stamps))
    assert all(s.valid_s == 2 and s.level == AlertLevel.GREEN for s in states)


def test_a_restarted_server_keeps_a_raised_alert_instead_of_flashing_green(tmp_path: Path, mosquitto, influxd) -> None:
    cfg = server_config(tmp_path, mosquitto.port, influxd.url, alerts={
        "silence_wall_clock": False, "rules": {"congested": {"raise_at": 8, "raise_for_s": 20, "clear_below": 4,
                                                             "clear_for_s": 20}}})
    first = [counts_message("u1", "l3", i, queue=10, crossings=2) for i in range(3)]
    later = [counts_message("u1", "l3", i, queue=6, crossings=2) for i in range(3, 6)]
    watch = Listener(mosquitto.port, f"gatewatch/v1/{GATE}/l3/alert", "restart-watch")
    for batch in (first, later):  # one server run per batch
        with running(cfg) as server:
            assert server.subscriber.subscribed.wait(10)
            publish_all(mosquitto.port, batch)

            def all_stored(s: Server = server, n: int = len(batch)) -> bool:
                return s.health.stored >= n

            wait_for(all_stored, 30, "records stored")
    states = [AlertMessage.model_validate_json(p) for _, p, _ in watch.snapshot()]
    watch.close()
    congested = [any(a.rule == "congested" for a in s.active) for s in states]
    assert congested.index(True) >= 0
    assert all(congested[congested.index(True):]), f"the restart dropped the alert: {congested}"
    rows = influxd.rows("SELECT * FROM alerts WHERE rule = 'congested'")
    assert [r["active"] for r in rows] == [True]
