"""End-to-end acknowledgement, edge half: rows leave the outbox on the server's `stored`, never on
a PUBACK alone, and a broker crash that loses acknowledged messages loses nothing end to end.

The server's half is played by `StoredAcker` (tests/runtime/helpers.py); the real server's half is
tested with the server.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edge.service.outbox import Outbox
from edge.service.runtime import EdgeRuntime
from tests.fixtures.mosquitto import Broker, start_broker
from tests.fixtures.procs import wait_for
from tests.runtime.helpers import (
    FakePipeline,
    StoredAcker,
    make_records,
    shipped_persistence,
    unit_config,
)
from wire.payloads import StoredMessage, encode, topic_for


def test_rows_stay_after_puback_and_leave_on_stored(mosquitto: Broker, tmp_path: Path) -> None:
    acker = StoredAcker(mosquitto.port)
    acker.stop()  # subscribed (a persistent session), then offline
    cfg = unit_config(tmp_path, mosquitto.port)
    runtime = EdgeRuntime(cfg, Outbox.from_config(cfg.outbox))
    records = make_records(10)
    for r in records:
        runtime.enqueue_record(r)
    runtime.publisher.start()
    try:
        wait_for(lambda: runtime.outbox.pending == 0, 10, "PUBACKs")
        time.sleep(0.5)
        assert len(runtime.outbox) == len(records)  # acknowledged by the broker, still held
        acker.start()
        try:
            wait_for(lambda: len(runtime.outbox) == 0, 10, "the server's stored")
        finally:
            acker.stop()
        assert runtime.publisher.confirmed == len(records) and runtime.publisher.resent == 0
        # A confirmation from another life of this unit id (beyond our numbering) deletes nothing.
        runtime.enqueue_record(make_records(1, first=50)[0])
        wait_for(lambda: runtime.outbox.pending == 0, 10, "PUBACK")
        forged = StoredMessage(gate=cfg.gate, unit=cfg.unit, through_seq=10_000,
                               at=records[0].window_start)
        runtime.publisher.client.publish(topic_for(forged), encode(forged), qos=1)
        time.sleep(1.0)
        assert len(runtime.outbox) == 1
    finally:
        runtime.publisher.stop(flush_timeout_s=0)
        runtime.outbox.close()


@pytest.mark.parametrize(
    ("broker_conf", "only_on_change"),
    [
        pytest.param("shipped", False, id="shipped-persistence"),
        # No save at all during the test: the crash surely loses what the broker acknowledged, and
        # a server that stays silent while its through_seq is stuck still gets the probe.
        pytest.param("no-save", True, id="no-save-silent-server"),
    ],
)
def test_broker_sigkill_after_pubacks_while_the_server_is_offline_loses_nothing(
    tmp_path: Path, broker_conf: str, only_on_change: bool
) -> None:
    extra = shipped_persistence() if broker_conf == "shipped" else "autosave_interval 3600\n"
    broker = start_broker(tmp_path / "mq", extra_conf=extra)
    resend_after_s = 12.0
    acker = StoredAcker(broker.port, only_on_change=only_on_change)
    acker.stop()  # the server goes offline; its persistent session queues for it at the broker
    runtime = None
    worker = None
    try:
        cfg = unit_config(tmp_path, broker.port, lanes=3, health={"interval_s": 1.0},
                          outbox={"resend_after_s": resend_after_s})
        records = make_records(100, lanes=3)  # 300 records
        pipeline = FakePipeline(records, interval_s=0.0, hold_s=120)
        runtime = EdgeRuntime(cfg, Outbox.from_config(cfg.outbox), flush_timeout_s=5)
        worker = threading.Thread(target=runtime.run, args=(pipeline,))
        worker.start()
        wait_for(lambda: pipeline.yielded == len(records), 60, "every record enqueued")
        wait_for(lambda: runtime.outbox.pending == 0, 60, "every PUBACK")
        last_before = runtime.outbox.last_seq
        assert len(runtime.outbox) >= len(records)  # all acknowledged by the broker, none confirmed

        broker.kill()  # SIGKILL: what the broker held only in memory is gone
        broker.start()
        acker.start()  # the server comes back
        wait_for(lambda: runtime.publisher.connected, 15, "the unit to reconnect")
        # What the server gets before any re-send is due: none of what the broker lost.
        time.sleep(1.5)
        assert runtime.publisher.resent == 0, "the re-send must not be due yet for this count to mean anything"
        arrived = {s for s in acker.received() if s <= last_before}
        lost_by_broker = last_before - len(arrived)
        if broker_conf == "no-save":
            assert lost_by_broker > 0.9 * last_before, "the crash should have lost the acknowledged messages"

        wait_for(lambda: len(runtime.outbox) == 0, 60, "everything confirmed stored")
        got = acker.received()
        assert set(range(1, last_before + 1)) <= got  # zero lost
        assert acker.gaps.get((cfg.gate, cfg.unit), 0) == 0
        assert runtime.outbox.lost == 0 and runtime.outbox.stats().dropped == 0
        assert runtime.publisher.resent >= lost_by_broker
        print(f"\n{broker_conf}: {last_before} messages acknowledged by the broker before its SIGKILL, "
              f"{lost_by_broker} lost by it; re-sent {runtime.publisher.resent} after {resend_after_s:.0f}s; "
              f"stored {len(got & set(range(1, last_before + 1)))} of {last_before}, 0 lost")
    finally:
        if runtime is not None:
            runtime.request_stop()
        if worker is not None:
            worker.join(30)
        acker.stop()
        broker.stop()


def test_a_server_that_stays_offline_gets_probes_not_a_flood(mosquitto: Broker, tmp_path: Path) -> None:
    """Re-sending every overdue row while the server is down would pile copies into the broker's
    queue for the server; only the oldest one goes, at a doubling interval."""
    acker = StoredAcker(mosquitto.port)
    acker.stop()
    cfg = unit_config(tmp_path, mosquitto.port, outbox={"resend_after_s": 1.0})
    runtime = EdgeRuntime(cfg, Outbox.from_config(cfg.outbox))
    for r in make_records(50):
        runtime.enqueue_record(r)
    runtime.publisher.start()
    try:
        wait_for(lambda: runtime.outbox.pending == 0, 10, "PUBACKs")
        time.sleep(8.0)
        # probes at about 1, 2, 4 and 8 s after the PUBACKs, each only the oldest row
        assert 1 <= runtime.publisher.resent <= 4, runtime.publisher.resent
        assert len(runtime.outbox) == 100
        acker.start()  # the server is back: its session holds everything, probes included
        try:
            wait_for(lambda: len(runtime.outbox) == 0, 15, "the server to confirm the backlog")
        finally:
            acker.stop()
    finally:
        runtime.publisher.stop(flush_timeout_s=0)
        runtime.outbox.close()
