"""TLS from the unit config: a unit trusting the broker's CA publishes; one trusting another CA
never connects and keeps its records."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from edge.service.outbox import Outbox
from edge.service.publisher import LinkState
from edge.service.runtime import EdgeRuntime
from tests.fixtures.mosquitto import start_broker
from tests.fixtures.procs import free_port, require_binary, wait_for
from tests.runtime.helpers import GATE, UNIT, FakePipeline, Subscriber, make_records, unit_config


def make_ca(openssl: str, tmp: Path, name: str) -> tuple[Path, Path]:
    key, crt = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "2", "-subj", f"/CN={name}"], check=True, capture_output=True)
    return key, crt


def make_server_cert(openssl: str, tmp: Path, ca_key: Path, ca_crt: Path) -> tuple[Path, Path]:
    key, csr, crt, ext = tmp / "server.key", tmp / "server.csr", tmp / "server.crt", tmp / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run([openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    subprocess.run([openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext)],
                   check=True, capture_output=True)
    return key, crt


def test_tls_with_the_right_ca_publishes_and_with_a_wrong_ca_keeps_records(tmp_path: Path) -> None:
    openssl = require_binary("openssl", "/usr/bin/openssl")
    ca_key, ca_crt = make_ca(openssl, tmp_path, "gate-ca")
    _, other_crt = make_ca(openssl, tmp_path, "other-ca")
    srv_key, srv_crt = make_server_cert(openssl, tmp_path, ca_key, ca_crt)
    plain = free_port()  # the test subscriber listens in the clear on a second listener
    broker = start_broker(
        tmp_path / "mq",
        extra_conf=f"cafile {ca_crt}\ncertfile {srv_crt}\nkeyfile {srv_key}\nlistener {plain} 127.0.0.1\n",
    )
    sub = Subscriber(plain, f"gatewatch/v1/{GATE}/{UNIT}/counts")
    try:
        good = tmp_path / "good"
        good.mkdir()
        cfg = unit_config(good, broker.port, mqtt={"tls_ca_file": str(ca_crt)})
        records = make_records(3)
        EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes)).run(FakePipeline(records))
        got = sub.wait_counts(len(records), timeout=10)
        assert [m.record() for m in got] == records

        bad = tmp_path / "bad"
        bad.mkdir()
        cfg = unit_config(bad, broker.port, mqtt={"tls_ca_file": str(other_crt)})
        runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes), flush_timeout_s=0.5)
        pipeline = FakePipeline(make_records(2, first=100), hold_s=30)
        worker = threading.Thread(target=runtime.run, args=(pipeline,))
        worker.start()
        try:
            wait_for(lambda: runtime.publisher.connect_attempts >= 2, 10, "retries")
            assert runtime.publisher.state == LinkState.UNREACHABLE and runtime.publisher.connects == 0
            assert len(runtime.outbox) == 4
        finally:
            runtime.request_stop()
            pipeline.stop()
            worker.join(10)
        assert len(sub.counts()) == len(records)  # nothing from the untrusting unit got through
    finally:
        sub.close()
        broker.stop()
