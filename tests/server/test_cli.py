"""The `gatewatch server` command: config errors with paths, one-line failures, secrets kept out of logs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import yaml

from common.mqtt import make_client
from tests.fixtures.influx import Influx1, QueryError
from tests.fixtures.mosquitto import add_user, start_broker
from tests.fixtures.procs import free_port, wait_for
from tests.server.helpers import (
    PYTHON,
    ROOT,
    Publisher,
    ServerProcess,
    counts_message,
    influx_counts,
    wait_server_subscribed,
    write_config,
)
from wire.payloads import encode, topic_for


def gatewatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "gatewatch", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=60)


def test_validate_config_accepts_the_shipped_example() -> None:
    r = gatewatch("server", "--config", str(ROOT / "deploy/server/server.yaml"), "--validate-config")
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_validate_config_lists_every_error_with_its_path(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({
        "mqtt": {"port": 70000, "hots": "x"},
        "influx": {"api": "v3", "url": "influx:8086"},
        "validation": {"gates": {"Huu Nghi": ["u1"]}},
        "alerts": {"rules": {"congested": {"raise_at": 3, "clear_below": 5}}, "level": {"yellow": 5, "red": 1}},
    }))
    r = gatewatch("server", "--config", str(cfg), "--validate-config")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    for path in ("mqtt.port", "mqtt.hots", "influx.api", "influx.url", "validation", "alerts.level"):
        assert f"\n  {path}: " in r.stderr, (path, r.stderr)
    assert len(r.stderr.strip().splitlines()) >= 6


def test_unreadable_config_is_one_line(tmp_path: Path) -> None:
    r = gatewatch("server", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "broken.yaml").write_text("mqtt: [unclosed\n")
    r = gatewatch("server", "--config", str(tmp_path / "broken.yaml"))
    assert r.returncode == 2 and "not valid YAML" in r.stderr and "Traceback" not in r.stderr


def test_password_env_not_set_is_one_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, free_port(), "http://127.0.0.1:9", mqtt={"host": "127.0.0.1", "port": free_port(),
                                                                          "username": "srv",
                                                                          "password_env": "GW_UNSET_PW"})
    os.environ.pop("GW_UNSET_PW", None)
    r = gatewatch("server", "--config", str(cfg))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: mqtt.password_env: environment variable GW_UNSET_PW is not set"]


def test_unreachable_broker_and_database_one_clear_line_each_and_it_keeps_trying(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, free_port(), f"http://127.0.0.1:{free_port()}")
    server = ServerProcess(cfg, tmp_path / "server.log")
    server.start()
    try:
        wait_for(lambda: "cannot reach mqtt broker" in server.output(), 20, "the broker error line")
        time.sleep(3)  # several reconnect attempts
        assert server.alive()
    finally:
        assert server.stop() == 0
    out = server.output()
    assert out.count("cannot reach mqtt broker") == 1
    assert "Traceback" not in out


def test_database_down_at_start_spools_and_says_so_once(tmp_path: Path, mosquitto) -> None:
    cfg = write_config(tmp_path, mosquitto.port, f"http://127.0.0.1:{free_port()}")
    server = ServerProcess(cfg, tmp_path / "server.log")
    server.start()
    try:
        wait_server_subscribed(mosquitto.port)
        pub = Publisher(mosquitto.port)
        for i in range(20):
            pub.send_message(counts_message("u1", "l1", i))
        pub.close()
        wait_for(lambda: "database unavailable, spooling" in server.output(), 20, "the database error line")
        time.sleep(2)
        assert server.alive()
    finally:
        assert server.stop() == 0
    out = server.output()
    assert out.count("database unavailable") == 1
    assert "Traceback" not in out


def test_broker_password_from_env_works_and_is_never_logged(tmp_path: Path, influxd) -> None:
    secret = "s3cr3t-Pa55-word"
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    add_user(broker_dir / "passwd", "gw-server", secret)
    add_user(broker_dir / "passwd", "edge", "edge-pw")
    broker = start_broker(broker_dir, f"password_file {broker_dir / 'passwd'}\n", anonymous=False)
    try:
        cfg = write_config(tmp_path, broker.port, influxd.url, log_level="DEBUG",
                           mqtt={"host": "127.0.0.1", "port": broker.port, "username": "gw-server",
                                 "password_env": "GW_MQTT_PASSWORD", "reconnect_min_s": 0.2, "reconnect_max_s": 1})
        env_server = ServerProcess(cfg, tmp_path / "server.log")
        os.environ["GW_MQTT_PASSWORD"] = secret
        try:
            env_server.start()
        finally:
            del os.environ["GW_MQTT_PASSWORD"]
        try:
            wait_for(lambda: "mqtt connected" in env_server.output(), 20, "an authenticated connect")
            edge = make_client("edge-auth", username="edge", password="edge-pw")
            edge.connect("127.0.0.1", broker.port)
            edge.loop_start()
            m = counts_message("u1", "l1", 1)
            edge.publish(topic_for(m), encode(m), qos=1).wait_for_publish(10)
            edge.disconnect()
            edge.loop_stop()
            wait_for(lambda: bool(influx_counts_or_empty(influxd)), 20, "the record stored")
        finally:
            assert env_server.stop() == 0
        out = env_server.output()
        assert secret not in out
        assert "refused" not in out
    finally:
        broker.stop()


def influx_counts_or_empty(db: Influx1) -> dict[tuple[str, str, str, str, int], int]:
    try:
        return influx_counts(db)
    except QueryError:
        return {}
