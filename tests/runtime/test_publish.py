"""The runtime against a real mosquitto: delivery, status/LWT, refused credentials, drain rate."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest

from common.mqtt import make_client
from edge.service.outbox import Outbox
from edge.service.publisher import Publisher
from edge.service.runtime import EdgeRuntime
from tests.fixtures.mosquitto import Broker, add_user, start_broker
from tests.fixtures.procs import wait_for
from tests.runtime.helpers import GATE, UNIT, FakePipeline, StoredAcker, Subscriber, make_records, unit_config
from wire.payloads import (
    AlertMessage,
    CountsMessage,
    CrossingEvent,
    EventMessage,
    StatusMessage,
    UnitState,
    VehicleClass,
    WindowRecord,
    encode,
)

UNIT_TOPICS = f"gatewatch/v1/{GATE}/{UNIT}/+"


def test_records_reach_a_qos1_subscriber_intact_with_status_online_then_offline(
    mosquitto: Broker, tmp_path: Path
) -> None:
    sub = Subscriber(mosquitto.port, UNIT_TOPICS)
    acker = StoredAcker(mosquitto.port)  # the server's `stored` confirmations
    cfg = unit_config(tmp_path, mosquitto.port, health={"interval_s": 0.5})
    records = make_records(40)
    pipeline = FakePipeline(records, interval_s=0.02, hold_s=1.2)
    runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes))
    runtime.run(pipeline)
    try:
        got = sub.wait_counts(len(records), timeout=10)
        assert sorted((m.record() for m in got), key=lambda r: (r.window_start, r.lane)) == sorted(
            records, key=lambda r: (r.window_start, r.lane)
        )
        assert len(got) == len(records)  # no duplicates on a healthy link
        stream = [m for m in sub.decoded() if m.kind in ("counts", "health")]
        seqs = sorted(m.seq for m in stream if not isinstance(m, AlertMessage))
        assert seqs == list(range(1, len(seqs) + 1))
        assert runtime.health_sent >= 1 and any(m.kind == "health" for m in stream)
        statuses = [m for m in sub.decoded("status") if isinstance(m, StatusMessage)]
        assert [s.state for s in statuses] == [UnitState.ONLINE, UnitState.OFFLINE]
        assert statuses[0].config_hash == cfg.config_hash()
        assert statuses[-1].seq == seqs[-1]  # offline says how far the stream went
        assert runtime.publisher.confirmed == seqs[-1]  # every row deleted on `stored`, none on PUBACK
    finally:
        sub.close()
        acker.stop()
    box = Outbox(cfg.outbox.path, cfg.outbox.max_bytes)
    assert len(box) == 0  # everything confirmed stored by the server and deleted
    box.close()
    # A late subscriber reads the retained status: the unit said goodbye.
    late = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/status", client_id="late")
    try:
        wait_for(lambda: bool(late.messages), 5, "retained status")
        _topic, payload, retained = late.messages[0]
        assert retained and b'"offline"' in payload
    finally:
        late.close()


def test_last_will_marks_a_vanished_unit_offline(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = unit_config(tmp_path, mosquitto.port)
    sub = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/status")
    runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes))
    runtime.publisher.start()
    try:
        wait_for(lambda: len(sub.decoded("status")) >= 1, 10, "online status")
        # Vanish without DISCONNECT (as a power cut would): close the socket under paho.
        runtime.publisher.client.loop_stop()
        sock = runtime.publisher.client.socket()
        assert sock is not None
        sock.close()
        wait_for(lambda: len(sub.decoded("status")) >= 2, 20, "last will")
        states = [m.state for m in sub.decoded("status") if isinstance(m, StatusMessage)]
        assert states == [UnitState.ONLINE, UnitState.OFFLINE]
    finally:
        sub.close()
        runtime.publisher.stop(flush_timeout_s=0)
        runtime.outbox.close()


def test_wrong_password_is_one_clear_error_retried_with_backoff_and_records_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    passwd = tmp_path / "passwd"
    add_user(passwd, "unit1", "right-password")
    broker = start_broker(tmp_path / "mq", extra_conf=f"password_file {passwd}\n", anonymous=False)
    monkeypatch.setenv("GATEWATCH_MQTT_PASSWORD", "wrong-password")
    try:
        cfg = unit_config(tmp_path, broker.port, mqtt={"username": "unit1"})
        records = make_records(5)
        pipeline = FakePipeline(records, interval_s=0.01, hold_s=60)
        runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes), flush_timeout_s=0.5)
        caplog.set_level(logging.INFO)
        worker = threading.Thread(target=runtime.run, args=(pipeline,))
        worker.start()
        try:
            wait_for(lambda: runtime.publisher.refusals >= 3, 15, "three refused attempts")
            assert not runtime.publisher.connected
            assert worker.is_alive()  # no crash
            assert len(runtime.outbox) == len(records)  # kept, not dropped
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1, [r.getMessage() for r in errors]
            line = errors[0].getMessage()
            assert "refused" in line and "password" in line.lower()
            assert "wrong-password" not in caplog.text  # never logged
            # backoff: attempts spread out (0.2 s, 0.4 s, 0.8 s, then 1 s apart), not a busy loop
            assert runtime.publisher.connect_attempts <= 8
        finally:
            runtime.request_stop()
            pipeline.stop()
            worker.join(20)
        assert not worker.is_alive()

        # The operator fixes the password: the kept records go out on the next start.
        monkeypatch.setenv("GATEWATCH_MQTT_PASSWORD", "right-password")
        box = Outbox(cfg.outbox.path, cfg.outbox.max_bytes)
        assert len(box) == len(records)
        fixed = EdgeRuntime(cfg, box)
        fixed.run(FakePipeline([]))
        assert fixed.publisher.connects == 1 and fixed.publisher.acked == len(records)
        check = Outbox(cfg.outbox.path, cfg.outbox.max_bytes)
        assert check.pending == 0  # all sent; kept (acked) until a server confirms them stored
        check.close()
    finally:
        broker.stop()


def test_backlog_drains_in_order_at_the_configured_rate(mosquitto: Broker, tmp_path: Path) -> None:
    rate = 100.0
    cfg = unit_config(tmp_path, mosquitto.port, mqtt={"drain_rate_per_s": rate, "max_inflight": 10})
    records = make_records(150)  # 300 records already waiting when the unit connects
    box = Outbox(cfg.outbox.path, cfg.outbox.max_bytes)
    runtime = EdgeRuntime(cfg, box)
    for r in records:
        runtime.enqueue_record(r)
    sub = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/counts")
    t0 = time.monotonic()
    runtime.publisher.start()
    try:
        got = sub.wait_counts(len(records), timeout=30)
        elapsed = time.monotonic() - t0
        assert [m.seq for m in got] == list(range(1, len(records) + 1))  # in order
        assert [m.record() for m in got] == records
        measured = len(records) / elapsed
        print(f"drained {len(records)} records in {elapsed:.2f}s: {measured:.0f}/s (limit {rate:.0f}/s)")
        assert measured <= rate * 1.15
    finally:
        runtime.publisher.stop(2)
        sub.close()
        box.close()


def test_a_file_that_ends_before_the_broker_is_up_is_still_delivered(tmp_path: Path) -> None:
    """`gatewatch edge` on a short clip: the source is done before the first CONNACK."""
    broker = start_broker(tmp_path / "mq")
    sub = Subscriber(broker.port, f"gatewatch/v1/{GATE}/{UNIT}/counts")
    try:
        broker.stop()
        cfg = unit_config(tmp_path, broker.port)
        records = make_records(4)
        runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes), flush_timeout_s=5)
        worker = threading.Thread(target=runtime.run, args=(FakePipeline(records),))
        worker.start()
        time.sleep(1.5)
        assert worker.is_alive() and len(runtime.outbox) == len(records)  # waiting for the link
        broker.start()
        worker.join(20)
        assert not worker.is_alive()
        got = sub.wait_counts(len(records), timeout=10)
        assert [m.record() for m in got] == records
    finally:
        sub.close()
        broker.stop()


def test_crossing_events_share_the_seq_stream(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = unit_config(tmp_path, mosquitto.port, counting={"events": True})
    sub = Subscriber(mosquitto.port, UNIT_TOPICS)
    runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes))
    event = CrossingEvent(lane="l1", at=datetime(2026, 11, 24, 8, 0, 3, tzinfo=UTC),
                          vehicle_class=VehicleClass.TRUCK, direction="in", track_id=42, wait_s=95.0)
    try:
        runtime.on_event(event)
        runtime.run(FakePipeline(make_records(1)))
        wait_for(lambda: len(sub.decoded("events")) == 1 and len(sub.counts()) == 2, 10, "event and counts")
        (ev,) = [m for m in sub.decoded("events") if isinstance(m, EventMessage)]
        assert ev.event == event and ev.seq == 1
        assert sorted(m.seq for m in sub.counts()) == [2, 3]
    finally:
        sub.close()


def counts_payload(record: WindowRecord, seq: int) -> bytes:
    return encode(CountsMessage.from_record(record, seq))


def test_the_publisher_drives_an_injected_client(mosquitto: Broker, tmp_path: Path) -> None:
    """Like the server's Subscriber, the Publisher takes a ready client (here one with its own client
    id) and only adds its callbacks and Last Will: records and status go out through that client."""
    sub = Subscriber(mosquitto.port, UNIT_TOPICS)
    acker = StoredAcker(mosquitto.port)  # rows leave the outbox on the server's `stored`
    cfg = unit_config(tmp_path, mosquitto.port)
    box = Outbox(cfg.outbox.path, cfg.outbox.max_bytes)

    def status(state: UnitState) -> StatusMessage:
        return StatusMessage(gate=GATE, unit=UNIT, seq=box.last_seq, state=state, at=datetime.now(UTC),
                             version="test", config_hash="injected")

    client = make_client("injected-client", reconnect_s=(0.2, 1.0))
    publisher = Publisher(cfg.mqtt, GATE, UNIT, box, status=status, client=client)
    assert publisher.client is client and client.on_publish is not None
    records = make_records(3)
    for r in records:
        box.enqueue(f"gatewatch/v1/{GATE}/{UNIT}/counts", partial(counts_payload, r))
    publisher.start()
    try:
        got = sub.wait_counts(len(records), timeout=10)
        assert [m.record() for m in got] == records
        wait_for(lambda: len(box) == 0, 10, "the server's stored to empty the outbox")
    finally:
        publisher.stop(flush_timeout_s=5)
        acker.stop()
        sub.close()
        box.close()
    states = [m.state for m in sub.decoded("status") if isinstance(m, StatusMessage)]
    assert states == [UnitState.ONLINE, UnitState.OFFLINE]
    assert all(m.config_hash == "injected" for m in sub.decoded("status") if isinstance(m, StatusMessage))
