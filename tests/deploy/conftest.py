"""A real mosquitto running the shipped secure config, with accounts made by real provisioning."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from gatewatch.provision import (
    SERVER_PASSWORD_ENV,
    UNIT_PASSWORD_ENV,
    ServerOptions,
    State,
    UnitOptions,
    provision_broker,
    provision_server,
    provision_unit,
    unit_username,
)
from gatewatch.services import Broker, free_port, start_mosquitto, wait_for, write_shipped_mosquitto_conf
from tests.deploy.dataset import Dataset, make_dataset, write_dataset
from tests.deploy.mqtt_probe import SHIPPED_CONF, Probe, env_value
from tests.fixtures.influx import Influx1, start_influxd
from tests.fixtures.procs import require_binary

UNITS = [("huu-nghi", "cam1"), ("huu-nghi", "cam2"), ("tan-thanh", "cam1")]
SERVER = "gatewatch-server"


@dataclass
class SecureBroker:
    state: State
    unit_port: int
    server_port: int
    broker: Broker
    log: Path

    def log_mark(self) -> int:
        return self.log.stat().st_size

    def wait_log(self, mark: int, text: str, timeout: float = 5.0) -> None:
        """Wait for `text` in what the broker logged after `mark`: why it refused, in its words."""
        def seen() -> bool:
            with self.log.open("rb") as f:
                f.seek(mark)
                return text.encode() in f.read()
        wait_for(seen, timeout, f"broker log line containing {text!r}")

    def unit(self, gate: str, unit: str, **over: object) -> Probe:
        """A client with the unit's provisioned bundle (password, CA, client certificate)."""
        d = self.state.unit_dir(gate, unit)
        kw: dict[str, object] = {
            "port": self.unit_port, "username": unit_username(gate, unit),
            "password": env_value(d / "edge.env", UNIT_PASSWORD_ENV),
            "ca": d / "tls" / "ca.crt", "cert": d / "tls" / "client.crt", "key": d / "tls" / "client.key",
            "client_id": f"{gate}-{unit}",
        }
        kw.update(over)
        return Probe(**kw)  # type: ignore[arg-type]

    def server(self, **over: object) -> Probe:
        d = self.state.server_dir(SERVER)
        kw: dict[str, object] = {
            "port": self.server_port, "username": SERVER,
            "password": env_value(d / "server.env", SERVER_PASSWORD_ENV), "ca": d / "tls" / "ca.crt",
            "client_id": SERVER,
        }
        kw.update(over)
        return Probe(**kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    require_binary("mosquitto")
    require_binary("mosquitto_passwd")
    require_binary("openssl")
    tmp = tmp_path_factory.mktemp("secure-broker")
    state = State(tmp / "state")
    provision_broker(state.root, ["broker.gate.test"])
    provision_server(state.root, SERVER, ServerOptions())
    for gate, unit in UNITS:
        provision_unit(state.root, gate, unit, UnitOptions(broker_host="broker.gate.test"))
    unit_port, server_port = free_port(), free_port()
    log = tmp / "broker.log"
    conf = write_shipped_mosquitto_conf(tmp, SHIPPED_CONF.read_text(), state.broker,
                                        {8883: unit_port, 8884: server_port}, log)
    broker = start_mosquitto(tmp, conf=conf, port=unit_port)
    try:
        yield SecureBroker(state, unit_port, server_port, broker, log)
    finally:
        broker.stop()


IQL = Path(__file__).resolve().parents[2] / "deploy" / "influxdb" / "gatewatch.iql"
APPLY = IQL.with_name("apply_iql.py")


def apply_iql(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The shipped setup script, run as an operator would (its own process, stdlib only)."""
    return subprocess.run([sys.executable, str(APPLY), str(IQL), "--url", url, *extra],
                          capture_output=True, text=True, timeout=120, check=False)


@dataclass
class GateDb:
    db: Influx1
    data: Dataset


@pytest.fixture(scope="session")
def gate_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GateDb]:
    """influxd with the shipped setup applied, the dataset written by the server's sink, and the
    continuous queries run once over it (the backfill path; the fixture's influxd runs no CQs)."""
    db = start_influxd(tmp_path_factory.mktemp("gate-db"))
    try:
        setup = apply_iql(db.url)
        assert setup.returncode == 0, setup.stderr
        data = make_dataset()
        write_dataset(db.url, data)
        fill = apply_iql(db.url, "--backfill-from", _rfc3339(data.start), "--backfill-to", _rfc3339(data.end))
        assert fill.returncode == 0, fill.stderr
        yield GateDb(db, data)
    finally:
        db.stop()


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
