"""The end-to-end acknowledgement on real services: units forget only what the server has stored.

Stand-in units (tests/server/unit_sim.py) keep the unit's half of the protocol; mosquitto, influxd
and `gatewatch server` are the real processes. Each test counts what was sent against what was
stored: zero lost, or every loss counted in the server's health and in its `stored` statements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatewatch.services import Broker, start_mosquitto
from server.health import ServerHealthMessage
from tests.fixtures.procs import wait_for
from tests.server.helpers import (
    DECLARED,
    GATE,
    Listener,
    ServerProcess,
    counts_message,
    expected_counts,
    influx_counts,
    wait_server_subscribed,
    write_config,
)
from tests.server.unit_sim import AckingUnit
from wire.payloads import CountsMessage, StoredMessage, WindowRecord
from wire.topics import SERVER_HEALTH

SHIPPED_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf"


def shipped(key: str) -> str:
    """A directive's value in the shipped broker config."""
    (value,) = [line.split(None, 1)[1].strip() for line in SHIPPED_CONF.read_text().splitlines()
                if line.split(None, 1)[:1] == [key]]
    return value


@pytest.fixture
def shipped_broker(tmp_path: Path) -> Iterator[Broker]:
    """mosquitto with the shipped config's persistence settings (its listeners and TLS are tested in
    tests/deploy; here the point is what a crash between two saves loses)."""
    assert shipped("persistence") == "true"
    broker = start_mosquitto(
        tmp_path / "mosquitto", autosave_interval_s=int(shipped("autosave_interval")),
        max_queued_messages=int(shipped("max_queued_messages")),
        extra=f"autosave_on_changes {shipped('autosave_on_changes')}\n"
              f"max_inflight_messages {shipped('max_inflight_messages')}\n")
    try:
        yield broker
    finally:
        broker.stop()


def records(unit: str, lane: str, first: int, n: int) -> list[WindowRecord]:
    return [counts_message(unit, lane, i).record() for i in range(first, first + n)]


def server_health(port: int, until: Callable[[ServerHealthMessage], bool] = lambda h: True) -> ServerHealthMessage:
    """The server's health once it satisfies `until` (it is published every second)."""
    watch = Listener(port, SERVER_HEALTH, f"health-{time.monotonic_ns()}")

    def latest() -> ServerHealthMessage | None:
        got = watch.snapshot()
        return ServerHealthMessage.model_validate_json(got[-1][1]) if got else None

    try:
        wait_for(lambda: (h := latest()) is not None and until(h), 10, "server health")
        health = latest()
        assert health is not None
        return health
    finally:
        watch.close()


def start_server(tmp: Path, port: int, db_url: str) -> ServerProcess:
    cfg = write_config(tmp, port, db_url, validation={"gates": DECLARED}, stored={"min_interval_s": 0.2})
    server = ServerProcess(cfg, tmp / "server.log")
    server.start()
    wait_server_subscribed(port)
    return server


def test_broker_sigkilled_while_the_server_is_offline_loses_nothing(tmp_path: Path, shipped_broker: Broker,
                                                                    influxd) -> None:
    units = {u: AckingUnit(shipped_broker.port, GATE, u, resend_after_s=2.0) for u in ("u1", "u2")}
    lanes = {"u1": "l1", "u2": "l3"}
    sent: list[CountsMessage] = []
    server = start_server(tmp_path, shipped_broker.port, influxd.url)
    try:
        for u, unit in units.items():
            sent += unit.send_records(records(u, lanes[u], 0, 50))
            unit.send_health()
        wait_for(lambda: all(not unit.hold() for unit in units.values()), 30, "first records stored and confirmed")

        assert server.stop() == 0  # the server goes offline; the broker queues for its session
        for u, unit in units.items():
            sent += unit.send_records(records(u, lanes[u], 50, 300))
            unit.send_health()
        wait_for(lambda: all(all(r.acked_at for r in unit.outbox.values()) for unit in units.values()), 30,
                   "PUBACKs for everything sent while the server is away")
        held = sum(len(unit.hold()) for unit in units.values())
        assert held == 2 * 301  # acknowledged by the broker, not yet stored: the units still hold them

        shipped_broker.kill()  # a crash: what it acknowledged since its last save is gone
        shipped_broker.start()
        server.start()
        want = expected_counts(sent)
        wait_for(lambda: influx_counts(influxd) == want and all(not unit.hold() for unit in units.values()), 90,
                   "every record stored, and every unit's outbox empty")
        assert sum(unit.resent for unit in units.values()) >= 2 * 300  # the broker lost them: units sent again
        marks = {f"{GATE}/{u}": unit.last_seq() for u, unit in units.items()}
        health = server_health(shipped_broker.port,
                               lambda h: {k: v.through_seq for k, v in h.units_seq.items()} == marks)
        assert health.seq_gaps == 0 and health.seq_resets == 0
    finally:
        for unit in units.values():
            unit.close()
        if server.alive():
            assert server.stop() == 0
    assert influxd.rows('SELECT count("frames") FROM lane_queue')[0]["count"] == len(sent) == 700
    assert "Traceback" not in server.output()


def test_losses_and_resets_are_counted_in_health_and_in_stored(tmp_path: Path, mosquitto, influxd) -> None:
    server = start_server(tmp_path, mosquitto.port, influxd.url)
    unit = AckingUnit(mosquitto.port, GATE, "u1", resend_after_s=30)
    statements = Listener(mosquitto.port, f"gatewatch/v1/{GATE}/u1/stored", "stored-watch")
    try:
        first = unit.send_records(records("u1", "l1", 0, 20))
        unit.send_health()
        wait_for(lambda: not unit.hold(), 20, "the first records confirmed")

        unit.pause()  # the link is down, and the unit's disk bound drops its 5 oldest rows unsent
        later = unit.send_records(records("u1", "l1", 20, 10))
        lost = unit.lose(5)
        unit.resume()
        unit.send_health()  # says the oldest seq it still holds
        wait_for(lambda: not unit.hold(), 20, "the rest confirmed")
        health = server_health(mosquitto.port, lambda h: h.seq_gaps > 0)
        assert health.units_seq[f"{GATE}/u1"].gaps == len(lost) == health.seq_gaps == 5
        wait_for(lambda: statement(statements).through_seq == unit.last_seq(), 10, "the last statement")
        assert (statement(statements).gaps, statement(statements).resets) == (5, 0)

        unit.close()  # re-imaged: a new unit with the same identity, its seq from 1 again
        unit = AckingUnit(mosquitto.port, GATE, "u1", resend_after_s=30)
        # its first windows may reach the server before its status, looking like re-deliveries of the old
        # seqs 1..3; they are stamped after the old life's newest message (its health, just now), so the
        # reset settles them in the new numbering. (Stamped before it, they wait for the unit's re-send
        # after resend_after_s, as docs/server.md says: an earlier version of this test stamped them a
        # minute back and failed whenever the records overtook the status.)
        today = datetime.fromtimestamp(time.time() // 10 * 10, UTC)
        again = unit.send_records([counts_message("u1", "l1", i, start=today).record() for i in range(3)])
        unit.send_health()
        wait_for(lambda: not unit.hold(), 20, "the new life's records confirmed")
        wait_for(lambda: statement(statements).through_seq == 4, 10, "the new life's statement")
        assert (statement(statements).gaps, statement(statements).resets) == (5, 1)
        assert server_health(mosquitto.port, lambda h: h.seq_resets > 0).seq_resets == 1
    finally:
        statements.close()
        unit.close()
        assert server.stop() == 0
    kept = first + [m for m in later if m.seq not in lost] + again
    assert influx_counts(influxd) == expected_counts(kept)


def statement(listener: Listener) -> StoredMessage:
    return StoredMessage.model_validate_json(listener.snapshot()[-1][1])


def test_a_restarted_server_carries_on_from_its_retained_statements(tmp_path: Path, mosquitto, influxd) -> None:
    unit = AckingUnit(mosquitto.port, GATE, "u2", resend_after_s=30)
    server = start_server(tmp_path, mosquitto.port, influxd.url)
    try:
        unit.send_records(records("u2", "l3", 0, 1))
        unit.send_health()
        wait_for(lambda: not unit.hold(), 20, "confirmed")
        unit.pause()
        unit.send_records(records("u2", "l3", 1, 10))
        unit.lose(2)
        unit.resume()
        unit.send_health()
        wait_for(lambda: not unit.hold(), 20, "confirmed, 2 lost")
        assert server.stop() == 0
        server.start()
        wait_server_subscribed(mosquitto.port)
        unit.send_records(records("u2", "l3", 11, 5))  # no health: only the restored mark can confirm these
        wait_for(lambda: not unit.hold(), 20, "confirmed by the restarted server")
        assert "restored huu-nghi/u2: stored through seq 13 (2 gaps, 0 resets so far)" in server.output()
        key = f"{GATE}/u2"
        health = server_health(mosquitto.port, lambda h: key in h.units_seq and h.units_seq[key].through_seq == 18)
        assert (health.units_seq[f"{GATE}/u2"].through_seq, health.seq_gaps) == (unit.last_seq(), 2) == (18, 2)
    finally:
        unit.close()
        if server.alive():
            assert server.stop() == 0
