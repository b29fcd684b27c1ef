"""Nothing lost, nothing doubled: the database stopped mid-stream, and the server SIGKILLed mid-stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from server.app import running
from tests.fixtures.influx import Influx1, QueryError
from tests.fixtures.procs import wait_for
from tests.server.helpers import (
    Publisher,
    ServerProcess,
    counts_message,
    expected_counts,
    influx_counts,
    server_config,
    wait_server_subscribed,
    write_config,
)
from wire.payloads import CountsMessage

OUTAGE_S = 30


def _stream(port: int, messages: Sequence[CountsMessage], interval_s: float, done: threading.Event) -> threading.Thread:
    def run() -> None:
        pub = Publisher(port, "edge-sim")
        for m in messages:
            pub.send_message(m)
            time.sleep(interval_s)
        pub.close()
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_database_down_30s_mid_stream(tmp_path: Path, mosquitto, influxd) -> None:
    # ~45 s of traffic at 10 records/s; influxd is stopped for 30 s in the middle
    messages = [counts_message(u, lane, i) for i in range(225) for u, lane in (("u1", "l1"), ("u2", "l2"))]
    want = expected_counts(messages)
    cfg = server_config(tmp_path, mosquitto.port, influxd.url)
    done = threading.Event()
    spool_peak = 0
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        _stream(mosquitto.port, messages, 0.1, done)
        wait_for(lambda: server.health.stored > 40, 20, "records flowing")
        influxd.stop()
        t_end = time.monotonic() + OUTAGE_S
        while time.monotonic() < t_end:
            spool_peak = max(spool_peak, server.writer.spool.depth)
            time.sleep(0.2)
        assert not server.writer.db_up
        influxd.start()
        assert done.wait(60)
        wait_for(lambda: server.health.stored >= len(messages) and server.writer.spool.depth == 0, 60,
                   "stream stored and spool replayed")
    assert spool_peak > 100, "the outage never reached the spool"
    got = influx_counts(influxd)  # asserts one point per key
    assert got == want
    assert influxd.rows('SELECT count("frames") FROM lane_queue')[0]["count"] == len(messages)


def test_server_sigkilled_mid_stream_loses_nothing(tmp_path: Path, mosquitto, influxd) -> None:
    messages = [counts_message("u1", lane, i) for i in range(150) for lane in ("l1", "l2")]
    want = expected_counts(messages)
    # a long flush interval keeps received messages unacknowledged in the server when it dies: only
    # acknowledging after the write (manual acks) makes the broker deliver them again
    config = write_config(tmp_path, mosquitto.port, influxd.url, influx={"api": "v1", "url": influxd.url,
                                                                          "flush_interval_s": 3.0})
    server = ServerProcess(config, tmp_path / "server.log")
    server.start()
    try:
        wait_server_subscribed(mosquitto.port)  # from here on the broker keeps its session
        pub = Publisher(mosquitto.port, "edge-sim")
        for m in messages[:100]:
            pub.send_message(m)
        pub.flush()
        wait_for(lambda: len(influx_counts_safe(influxd)) > 0, 30, "first records stored")
        for m in messages[100:200]:  # received by the server, not yet stored, when it dies
            pub.send_message(m)
        pub.flush()
        time.sleep(0.5)
        server.kill()
        for m in messages[200:]:  # published while it is down: queued in its session by the broker
            pub.send_message(m)
        pub.close()
        server.start()
        wait_for(lambda: influx_counts_safe(influxd) == want, 60, "every record after the restart")
        assert server.alive()
    finally:
        if server.alive():
            assert server.stop() == 0
    assert "Traceback" not in server.output()
    assert "session present: True" in server.output()  # the restart resumed the broker's session
    assert influxd.rows('SELECT count("frames") FROM lane_queue')[0]["count"] == len(messages)


def influx_counts_safe(db: Influx1) -> dict[tuple[str, str, str, str, int], int]:
    try:
        return influx_counts(db)
    except QueryError:  # "database not found" until the server's first write
        return {}


def test_v2_database_outage_spools_and_replays(tmp_path: Path, mosquitto, victoria) -> None:
    from tests.server.helpers import server_process, victoria_counts

    first = [counts_message("u1", "l1", i) for i in range(20)]
    during = [counts_message("u1", "l1", i) for i in range(20, 60)]
    with server_process(tmp_path / "srv", mosquitto.port, victoria.url, influx={"api": "v2", "url": victoria.url}) \
            as server:
        pub = Publisher(mosquitto.port, "edge-sim")
        for m in first:
            pub.send_message(m)
        pub.flush()
        wait_for(lambda: len(victoria_counts(victoria)) == len(expected_counts(first)), 30, "first records")
        victoria.stop()
        for m in during:
            pub.send_message(m)
        pub.close()
        wait_for(lambda: "database unavailable, spooling" in server.output(), 30, "the server to spool")
        victoria.start()
        want = expected_counts(first + during)
        wait_for(lambda: victoria_counts(victoria) == want, 60, "every record after the outage")
