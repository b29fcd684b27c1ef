"""A 30 s broker outage mid-stream: every record arrives exactly once after dedupe, no seq gap."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from edge.service.outbox import Outbox
from edge.service.publisher import LinkState
from edge.service.runtime import EdgeRuntime
from tests.fixtures.mosquitto import start_broker
from tests.fixtures.procs import wait_for
from tests.runtime.helpers import GATE, UNIT, FakePipeline, Subscriber, make_records, unit_config
from wire.payloads import AlertMessage, HealthMessage, StatusMessage, UnitState

OUTAGE_S = 30.0


def test_broker_down_30s_mid_stream_loses_nothing(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "mq")
    sub = None
    try:
        sub = Subscriber(broker.port, f"gatewatch/v1/{GATE}/{UNIT}/+")
        cfg = unit_config(
            tmp_path, broker.port, health={"interval_s": 2.0},
            mqtt={"drain_rate_per_s": 50.0, "max_inflight": 10},
        )
        # ~40 s of production: 200 windows x 2 lanes, a record every 0.1 s.
        records = make_records(200)
        pipeline = FakePipeline(records, interval_s=0.1, hold_s=0.5)
        runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes), flush_timeout_s=30)
        worker = threading.Thread(target=runtime.run, args=(pipeline,))
        worker.start()

        wait_for(lambda: len(sub.counts()) >= 20, 15, "records flowing before the outage")
        broker.stop()
        down_at = time.monotonic()
        wait_for(lambda: not runtime.publisher.connected, 10, "the unit to notice")
        time.sleep(OUTAGE_S - (time.monotonic() - down_at))
        backlog = len(runtime.outbox)
        assert backlog > 100, "the outage must leave a real backlog"
        assert runtime.publisher.state in (LinkState.DISCONNECTED, LinkState.UNREACHABLE)
        broker.start()
        up_at = time.monotonic()
        wait_for(lambda: runtime.publisher.connected, 15, "reconnect")
        reconnect_s = time.monotonic() - up_at
        wait_for(lambda: runtime.outbox.pending == 0, 60, "the backlog to drain")
        drain_s = time.monotonic() - up_at
        worker.join(60)
        assert not worker.is_alive()

        got = sub.wait_counts(len(records), timeout=20)
        by_key = {m.key: m for m in got}
        assert len(by_key) == len(records)  # every record, once after dedupe
        assert {k: m.record() for k, m in by_key.items()} == {r.key: r for r in records}
        stream = [m for m in sub.decoded() if m.kind in ("counts", "health")]
        seqs = sorted({m.seq for m in stream if not isinstance(m, AlertMessage)})
        assert seqs == list(range(1, seqs[-1] + 1)), "gap in seq"
        assert seqs[-1] == len(records) + runtime.health_sent
        # `online` on every connect; health sent during the outage arrives late and shows the backlog
        states = [m.state for m in sub.decoded("status") if isinstance(m, StatusMessage)]
        assert states.count(UnitState.ONLINE) == 2 and states[-1] == UnitState.OFFLINE
        health = [m for m in sub.decoded("health") if isinstance(m, HealthMessage)]
        assert max(h.outbox_depth for h in health) > 100
        assert max(h.outbox_oldest_s or 0.0 for h in health) > 20
        print(
            f"\noutage {OUTAGE_S:.0f}s: backlog {backlog} msgs, reconnect {reconnect_s:.1f}s after broker start, "
            f"drained in {drain_s:.1f}s; {len(got)} counts received for {len(records)} records "
            f"({len(got) - len(records)} duplicates), {runtime.health_sent} health"
        )
    finally:
        if sub is not None:
            sub.close()
        broker.stop()
