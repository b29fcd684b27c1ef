"""The server's /metrics from a real `gatewatch server` (real mosquitto, real influxd): received,
stored, dead-lettered by reason, alerts active, units last seen; the seq-gap seam; and a port that
cannot be bound costs /metrics, not the process."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.config import MetricsConfig
from common.metrics import serve_metrics
from server.health import Health
from server.metrics import Readers, ServerMetrics
from tests.fixtures.influx import Influx1
from tests.fixtures.mosquitto import Broker
from tests.fixtures.procs import free_port, wait_for
from tests.server.helpers import GATE, Publisher, counts_message, server_process
from wire.payloads import encode, topic_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return parse(resp.read().decode())


def v(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_follow_what_the_server_did(mosquitto: Broker, influxd: Influx1, tmp_path: Path) -> None:
    port = free_port()
    # a long queue on u1's lane for 80 s: congested (raise_at 8 for 60 s) while the others stay green
    valid = [counts_message("u1", "l1", i, queue=12) for i in range(8)]
    valid += [counts_message("u2", "l2", i) for i in range(3)]
    with server_process(tmp_path, mosquitto.port, influxd.url, metrics={"enabled": True, "port": port}) as server:
        pub = Publisher(mosquitto.port)
        for m in valid:
            pub.send_message(m)
        pub.send(f"gatewatch/v1/{GATE}/u1/counts", b"{not json")
        pub.send(f"gatewatch/v1/{GATE}/u9/counts", encode(counts_message("u9", "l1", 0)))
        pub.send(topic_for(valid[0]), encode(valid[0].model_copy(update={"schema_version": 1})))  # a re-send
        pub.close()
        wait_for(lambda: v(scrape(port), "gatewatch_server_messages_received_total") == len(valid) + 3, 20,
                 "every message received")
        wait_for(lambda: v(scrape(port), "gatewatch_server_messages_stored_total") == len(valid) + 1, 20,
                 "every valid message stored")
        s = scrape(port)
        assert v(s, "gatewatch_server_messages_dead_lettered_total", reason="bad_json") == 1
        assert v(s, "gatewatch_server_messages_dead_lettered_total", reason="unknown_unit") == 1
        assert v(s, "gatewatch_server_alerts_active", rule="congested", level="orange") == 1
        assert v(s, "gatewatch_server_spool_points") == 0
        assert v(s, "gatewatch_server_database_up") == 1 and v(s, "gatewatch_server_mqtt_connected") == 1
        seen = {dict(labels)["unit"]: at for (name, labels), at in s.items()
                if name == "gatewatch_server_unit_last_seen_timestamp_seconds"}
        assert set(seen) == {"u1", "u2"} and all(time.time() - 60 < at <= time.time() for at in seen.values())
        stored = influxd.rows('SELECT count("total") FROM lane_queue')[0]["count"]
        assert stored == len(valid)
        assert v(s, "gatewatch_server_write_seconds_count") >= 1
        assert "Traceback" not in server.output()


def test_seq_gaps_seam() -> None:
    """What the per-unit seq tracker will call: cumulative gaps and resets, exposed per unit."""
    metrics = ServerMetrics(Readers(Health("s"), spool_points=lambda: 0, database_up=lambda: True,
                                    db_rejected_points=lambda: 0, mqtt_connected=lambda: True))
    from prometheus_client import generate_latest

    empty = parse(generate_latest(metrics.registry).decode())
    assert not any(name.startswith("gatewatch_server_unit_seq") for name, _ in empty)
    metrics.record_seq("huu-nghi", "cam1", gaps=3, resets=1)
    metrics.record_seq("huu-nghi", "cam1", gaps=5, resets=1)
    s = parse(generate_latest(metrics.registry).decode())
    assert v(s, "gatewatch_server_unit_seq_gaps_total", gate="huu-nghi", unit="cam1") == 5
    assert v(s, "gatewatch_server_unit_seq_resets_total", gate="huu-nghi", unit="cam1") == 1


def test_a_busy_port_costs_metrics_not_the_process(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        metrics = ServerMetrics(Readers(Health("s"), spool_points=lambda: 0, database_up=lambda: True,
                                        db_rejected_points=lambda: 0, mqtt_connected=lambda: True))
        with caplog.at_level(logging.ERROR):
            assert serve_metrics(MetricsConfig(enabled=True, port=port), metrics.registry, "server") is None
        assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
    assert serve_metrics(MetricsConfig(enabled=False), metrics.registry, "server") is None
