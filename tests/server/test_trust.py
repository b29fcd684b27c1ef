"""No unit speaks for another, no clock runs the alerts, and nothing the database refuses is silent.

Real mosquitto, influxd and the server in process: forged lanes change no alert state, a window
stamped ahead of the clock is stored but leaves the lane's alerts alone, and every point the
database refuses becomes a dead letter carrying the database's own reason.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from server.app import running
from tests.fixtures.influx import Influx1
from tests.fixtures.procs import wait_for
from tests.server.helpers import (
    BASE,
    DECLARED,
    GATE,
    Listener,
    counts_message,
    publish_all,
    server_config,
)
from wire.payloads import AlertMessage, CountsMessage, DeadLetter
from wire.topics import DEAD_LETTER

ALERTS = {"silence_wall_clock": False, "valid_s": 60,
          "rules": {"congested": {"raise_at": 5, "raise_for_s": 20, "clear_below": 2, "clear_for_s": 20},
                    "stalled": {"enabled": False}}}


def congested(listener: Listener) -> list[bool]:
    return [any(a.rule == "congested" for a in AlertMessage.model_validate_json(p).active)
            for _, p, _ in listener.snapshot()]


def test_a_unit_cannot_congest_another_units_lanes(tmp_path: Path, mosquitto, influxd) -> None:
    cfg = server_config(tmp_path, mosquitto.port, influxd.url, alerts=ALERTS, validation={"gates": DECLARED})
    alerts = Listener(mosquitto.port, f"gatewatch/v1/{GATE}/+/alert", "alert-watch")
    letters = Listener(mosquitto.port, DEAD_LETTER, "dead-letters")
    own = [counts_message("u1", "l1", i, queue=0, crossings=3) for i in range(10)]
    forged = [counts_message("u2", lane, i, queue=10, crossings=0, seq=100 + i)
              for i in range(10) for lane in ("l1", "l2", "brand-new-lane")]
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        publish_all(mosquitto.port, own + forged)
        wait_for(lambda: len(letters.snapshot()) >= len(forged), 30, "every forged record dead-lettered")
        wait_for(lambda: server.health.stored >= len(own), 30, "the unit's own records")
        lanes = {lane for gate, lane in server.alerts.lanes()}
    assert {d.reason for d in letters.dead_letters()} == {"foreign_lane"}
    assert lanes == {"l1"}  # no alert topic for the forged lanes
    assert not any(congested(alerts))
    alerts.close()
    letters.close()


def test_a_window_ahead_of_the_clock_never_moves_alert_state(tmp_path: Path, mosquitto, influxd: Influx1) -> None:
    cfg = server_config(tmp_path, mosquitto.port, influxd.url, alerts=ALERTS,
                        validation={"gates": DECLARED, "clock_tolerance_s": 10, "max_future_s": 120})
    now = datetime.fromtimestamp(time.time() // 10 * 10, UTC)
    start = now - timedelta(minutes=10)

    def window(i: int, queue: int, at: datetime | None = None) -> CountsMessage:
        return counts_message("u1", "l1", i, queue=queue, crossings=3, start=start if at is None else at)

    busy = [window(i, 10) for i in range(5)]  # raised
    ahead = window(0, 10, at=now + timedelta(seconds=90))  # ends 100 s ahead: stored, not alerted
    drained = [window(i, 0) for i in range(5, 15)]  # must clear, as they would without the stray window
    alerts = Listener(mosquitto.port, f"gatewatch/v1/{GATE}/l1/alert", "alert-watch")
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        publish_all(mosquitto.port, [*busy, ahead, *drained])
        wait_for(lambda: server.health.stored >= 16, 30, "every record stored")
        wait_for(lambda: congested(alerts)[-1:] == [False], 10, "the lane cleared")
        ahead_count = server.health.ahead[f"{GATE}/u1"]
    transitions = congested(alerts)
    assert [b for a, b in zip([False, *transitions], transitions, strict=False) if a != b] == [True, False]
    assert ahead_count == 1
    stored = influxd.rows('SELECT "length_max" FROM lane_queue')
    assert len(stored) == 16  # the stray window is kept: it is data, just not a clock
    alerts.close()


def test_every_point_the_database_refuses_is_dead_lettered_with_its_reason(tmp_path: Path, mosquitto,
                                                                          influxd: Influx1) -> None:
    # a retention policy of 1 h, and someone else's `loop_count` written as a float where ours go
    query = urllib.parse.urlencode({"q": "CREATE DATABASE gatewatch WITH DURATION 1h"}).encode()
    urllib.request.urlopen(f"{influxd.url}/query", data=query, timeout=10).close()
    recent = datetime.fromtimestamp(time.time() // 10 * 10 - 600, UTC)
    conflict = f"lane_queue,gate=elsewhere,lane=x,unit=x loop_count=1.5 {int(recent.timestamp())}"
    urllib.request.urlopen(f"{influxd.url}/write?db=gatewatch&precision=s", data=conflict.encode(),
                           timeout=10).close()
    # the cross-gate summary is left out: a tick between the day-old records and the recent ones would
    # summarise a day-old interval, whose points the 1 h policy refuses too (rightly, but not this test's subject)
    cfg = server_config(tmp_path, mosquitto.port, influxd.url, validation={"gates": DECLARED, "max_age_s": 86400 * 30},
                        summary={"enabled": False})
    old = [counts_message("u1", "l1", i, start=BASE) for i in range(3)]  # a day old: beyond the 1 h policy
    fine = [counts_message("u1", "l1", i, start=recent) for i in range(20)]
    clash = [counts_message("u1", "l2", 0, start=recent, loop_count=4)]
    letters = Listener(mosquitto.port, DEAD_LETTER, "dead-letters")
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        publish_all(mosquitto.port, [*old, *fine, *clash])
        wait_for(lambda: server.health.stored >= len(old + fine + clash), 30, "every message handled")
        wait_for(lambda: len(letters.snapshot()) >= 3 * 9 + 1, 30, "a dead letter per refused point")
        health = server.health.snapshot(server.clock(), spool_depth=0, db_up=True, mqtt_connected=True,
                                        db_rejected_points=server.writer.rejected_points)
    got: list[DeadLetter] = letters.dead_letters()
    letters.close()
    assert {d.reason for d in got} == {"db_rejected"}
    others = [(d.topic, d.detail[:200]) for d in got if d.topic != f"gatewatch/v1/{GATE}/u1/counts"]
    assert others == []
    beyond = [d for d in got if "beyond retention policy" in d.detail]
    typed = [d for d in got if "field type conflict" in d.detail]
    assert len(beyond) == 3 * 9  # every point of the old records: 4 classes x 2 directions, and the queue
    assert len(typed) == 1 and typed[0].payload.startswith(f"lane_queue,gate={GATE},lane=l2,unit=u1 ")
    assert health.db_rejected_points == len(got) == health.rejected_by_reason["db_rejected"]
    assert len(influxd.rows('SELECT "frames" FROM lane_queue WHERE "lane" = \'l1\'')) == len(fine)
