"""Both halves of the end-to-end acknowledgement together: the real edge runtime (outbox, publisher)
and a real `gatewatch server` process, through mosquitto running the shipped persistence settings,
into a real influxd.

The broker is SIGKILLed while the server is offline, after it has PUBACKed every record of the
unit: a unit that forgot its records on PUBACK would have lost all of them. Here the unit holds
them until the server says they are stored, sends again what the broker lost, and every record
reaches the database: zero lost, zero gaps, an empty outbox.
"""

from __future__ import annotations

import threading
from pathlib import Path

from edge.service.outbox import Outbox
from edge.service.runtime import EdgeRuntime
from server.health import ServerHealthMessage
from tests.fixtures.influx import Influx1, QueryError
from tests.fixtures.mosquitto import start_broker
from tests.fixtures.procs import wait_for
from tests.runtime.helpers import GATE, UNIT, FakePipeline, make_records, shipped_persistence, unit_config
from tests.server.helpers import (
    Listener,
    ServerProcess,
    expected_counts,
    influx_counts,
    wait_server_subscribed,
    write_config,
)
from wire.payloads import CountsMessage
from wire.topics import SERVER_HEALTH

LANES = 3


def stored(db: Influx1) -> dict[tuple[str, str, str, str, int], int]:
    try:
        return influx_counts(db)
    except QueryError:  # "database not found" until the server's first write
        return {}


def test_real_unit_and_real_server_lose_nothing_when_the_broker_dies(tmp_path: Path, influxd: Influx1) -> None:
    broker = start_broker(tmp_path / "mq", extra_conf=shipped_persistence())
    lanes = {f"l{i}": ["in", "out"] for i in range(1, LANES + 1)}
    server = ServerProcess(write_config(tmp_path, broker.port, influxd.url, validation={"gates": {GATE: {UNIT: lanes}}},
                                        stored={"min_interval_s": 0.2}), tmp_path / "server.log")
    records = make_records(100, lanes=LANES)
    want = expected_counts(CountsMessage.from_record(r, 0) for r in records)
    cfg = unit_config(tmp_path / "unit", broker.port, lanes=LANES, health={"interval_s": 1.0},
                      outbox={"resend_after_s": 5.0})
    runtime = EdgeRuntime(cfg, Outbox.from_config(cfg.outbox), flush_timeout_s=5)
    pipeline = FakePipeline(records, interval_s=0.0, hold_s=300)
    worker = threading.Thread(target=runtime.run, args=(pipeline,))
    try:
        server.start()
        wait_server_subscribed(broker.port)  # its persistent session exists at the broker
        assert server.stop() == 0  # offline: the broker queues for it
        worker.start()
        wait_for(lambda: pipeline.yielded == len(records), 60, "every record enqueued")
        wait_for(lambda: runtime.outbox.pending == 0, 60, "every PUBACK from the broker")
        assert len(runtime.outbox) >= len(records)  # acknowledged by the broker, and still held

        broker.kill()  # the broker's memory, with every record it acknowledged, is gone
        broker.start()
        server.start()
        wait_for(lambda: stored(influxd) == want and len(runtime.outbox) == 0, 120,
                 "every record stored, and the unit's outbox empty")
        assert runtime.publisher.resent > 0  # the broker lost them: only the unit still had them
        watch = Listener(broker.port, SERVER_HEALTH, "health-watch")
        try:
            wait_for(lambda: bool(watch.snapshot()), 10, "server health")
            health = ServerHealthMessage.model_validate_json(watch.snapshot()[-1][1])
        finally:
            watch.close()
        assert health.seq_gaps == 0 and health.seq_resets == 0
        assert runtime.outbox.lost == 0 and runtime.outbox.stats().dropped == 0
    finally:
        runtime.request_stop()
        if worker.is_alive():
            worker.join(30)
        if server.alive():
            assert server.stop() == 0
        broker.stop()
    assert "Traceback" not in server.output()
    assert influxd.rows('SELECT count("frames") FROM lane_queue')[0]["count"] == len(records)
