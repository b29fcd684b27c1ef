"""The product's own MQTT code, configured by provisioning, through the shipped secure broker.

The edge runtime runs with the provisioned unit.yaml, and the server's subscriber with the
provisioned server.yaml. Only the install paths (/etc/gatewatch/...) and the broker address
are pointed at the test copies. Counts published by the unit must reach the server with the
unit's status, as in production.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from edge.config import UnitConfig, load_config
from edge.service.outbox import Outbox
from edge.service.runtime import EdgeRuntime
from gatewatch.provision import SERVER_PASSWORD_ENV, UNIT_PASSWORD_ENV
from server.config import MqttConfig
from server.subscriber import Received, Subscriber
from tests.deploy.conftest import SERVER, SecureBroker, apply_iql
from tests.deploy.mqtt_probe import env_value
from tests.fixtures.influx import Influx1
from tests.fixtures.procs import wait_for
from tests.server.helpers import ServerProcess
from wire.payloads import CountsMessage, StatusMessage, UnitState, VehicleClass, WindowRecord, decode_message

GATE, UNIT = "huu-nghi", "cam1"


class Records:
    """A pipeline stand-in that yields prepared window records, as a replay would."""

    def __init__(self, records: list[WindowRecord]) -> None:
        self._records = records

    def records(self) -> Iterator[WindowRecord]:
        yield from self._records

    def close(self) -> None:
        pass


def unit_config(broker: SecureBroker, tmp: Path) -> UnitConfig:
    bundle = broker.state.unit_dir(GATE, UNIT)
    raw = yaml.safe_load((bundle / "unit.yaml").read_text())
    tls = bundle / "tls"
    raw["mqtt"].update(host="127.0.0.1", port=broker.unit_port, tls_ca_file=str(tls / "ca.crt"),
                       tls_cert_file=str(tls / "client.crt"), tls_key_file=str(tls / "client.key"),
                       reconnect_min_s=0.2)
    raw["outbox"] = {"path": str(tmp / "outbox.sqlite3")}
    raw["source"] = {"kind": "file", "path": str(tmp / "unused.mp4")}
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "unit.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def test_provisioned_unit_reaches_provisioned_server(secure_broker: SecureBroker, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    server_dir = secure_broker.state.server_dir(SERVER)
    server_raw = yaml.safe_load((server_dir / "server.yaml").read_text())["mqtt"]
    server_raw.update(port=secure_broker.server_port, tls_ca_file=str(server_dir / "tls" / "ca.crt"))
    server_cfg = MqttConfig.model_validate(server_raw)
    monkeypatch.setenv(SERVER_PASSWORD_ENV, env_value(server_dir / "server.env", SERVER_PASSWORD_ENV))
    inbox: queue.SimpleQueue[Received] = queue.SimpleQueue()
    sub = Subscriber(server_cfg, inbox)
    sub.start()
    try:
        assert sub.connected.wait(10), "server subscriber did not connect"
        time.sleep(0.3)  # SUBACK
        start = datetime.now(UTC).replace(microsecond=0)
        records = [
            WindowRecord(gate=GATE, unit=UNIT, lane="lane1", window_start=start + timedelta(seconds=10 * i),
                         window_s=10.0, counts={VehicleClass.TRUCK: {"in": i + 1}})
            for i in range(3)
        ]
        run_unit(secure_broker, tmp_path, monkeypatch, records)

        got: list[CountsMessage] = []
        states: list[UnitState] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(got) < len(records) or UnitState.OFFLINE not in states):
            try:
                msg = inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            sub.ack(msg.mid, msg.qos, msg.generation)
            decoded = decode_message(msg.topic, msg.payload)
            if isinstance(decoded, CountsMessage):
                got.append(decoded)
            elif isinstance(decoded, StatusMessage):
                states.append(decoded.state)
        assert [m.record() for m in got] == records
        assert states[0] == UnitState.ONLINE and states[-1] == UnitState.OFFLINE
    finally:
        sub.stop()
        clear_retained_status(secure_broker)


def clear_retained_status(broker: SecureBroker) -> None:
    """The unit's retained status would otherwise greet later subscribers of the shared broker."""
    cleaner = broker.unit(GATE, UNIT)
    if cleaner.connect().ok:
        cleaner.publish(f"gatewatch/v1/{GATE}/{UNIT}/status", b"", retain=True)
    cleaner.close()


def run_unit(broker: SecureBroker, tmp: Path, monkeypatch: pytest.MonkeyPatch, records: list[WindowRecord]) -> None:
    """The real edge runtime with the provisioned bundle, until its records are delivered."""
    cfg = unit_config(broker, tmp)
    monkeypatch.setenv(UNIT_PASSWORD_ENV, env_value(broker.state.unit_dir(GATE, UNIT) / "edge.env", UNIT_PASSWORD_ENV))
    runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes), flush_timeout_s=5)
    worker = threading.Thread(target=runtime.run, args=(Records(records),))
    worker.start()
    worker.join(30)
    assert not worker.is_alive()


def test_unit_to_dashboard_through_the_deployed_stack(secure_broker: SecureBroker, influxd: Influx1,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Provisioned unit -> secure broker -> `gatewatch server` (provisioned account) -> InfluxDB set
    up by gatewatch.iql -> the gates-overview panel query shows the unit's vehicles."""
    assert apply_iql(influxd.url).returncode == 0
    server_dir = secure_broker.state.server_dir(SERVER)
    raw = yaml.safe_load((server_dir / "server.yaml").read_text())
    raw["mqtt"].update(port=secure_broker.server_port, tls_ca_file=str(server_dir / "tls" / "ca.crt"),
                       reconnect_min_s=0.2)
    raw.update(influx={"url": influxd.url, "database": "gatewatch", "flush_interval_s": 0.1},
               spool={"path": str(tmp_path / "spool.sqlite3")}, health={"interval_s": 1})
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    server = ServerProcess(cfg, tmp_path / "server.log",
                           {SERVER_PASSWORD_ENV: env_value(server_dir / "server.env", SERVER_PASSWORD_ENV)})
    server.start()
    try:
        def connected() -> bool:
            rows = influxd.rows('SELECT last("mqtt_connected") FROM "server_health"')
            return bool(rows) and rows[0]["last"] is True
        wait_for(connected, 30, "the server to connect to the broker and report health")

        start = (datetime.now(UTC) - timedelta(minutes=5)).replace(second=0, microsecond=0)
        records = [
            WindowRecord(gate=GATE, unit=UNIT, lane=lane, window_start=start + timedelta(seconds=10 * i),
                         window_s=10.0, counts={VehicleClass.TRUCK: {"in": i + 1}, VehicleClass.CAR: {"out": 2}})
            for i in range(6) for lane in ("lane1", "lane2")
        ]
        run_unit(secure_broker, tmp_path / "unit", monkeypatch, records)
        want = sum(r.total() for r in records)

        def stored() -> bool:
            rows = influxd.rows('SELECT sum("count") FROM "gatewatch"."raw"."lane_counts"')
            return bool(rows) and rows[0]["sum"] == want
        wait_for(stored, 20, f"{want} vehicles in InfluxDB's raw policy")

        from tests.deploy.test_grafana import interpolate, load_dashboards

        (panel,) = [p for p in load_dashboards()["gates-overview.json"]["panels"]
                    if p["title"] == "Vehicles per interval by gate"]
        query = interpolate(panel["targets"][0]["query"], start, start + timedelta(minutes=2))
        rows = influxd.rows(query)
        assert sum(r["sum"] for r in rows if r["gate"] == GATE) == want
    finally:
        code = server.stop()
        clear_retained_status(secure_broker)
    output = server.output()
    assert code == 0 and "Traceback" not in output, output[-2000:]
    assert "refused" not in output and "not authori" not in output.lower(), output[-2000:]
