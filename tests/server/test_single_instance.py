"""One server per spool and per MQTT client id: a second one refuses to run, with one clear line.

Two servers on one client id take the broker session from each other, and every takeover makes the
broker re-send every unacknowledged message; on one spool they would replay the same rows twice.
"""

from __future__ import annotations

from pathlib import Path

from server import AnotherServer
from tests.fixtures.influx import QueryError
from tests.fixtures.procs import wait_for
from tests.server.helpers import (
    DECLARED,
    Publisher,
    ServerProcess,
    counts_message,
    expected_counts,
    influx_counts,
    wait_server_subscribed,
    write_config,
)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "ERROR" in line or line.startswith("error:")]


def test_a_second_server_on_the_same_spool_refuses_to_start(tmp_path: Path, mosquitto, influxd) -> None:
    cfg = write_config(tmp_path, mosquitto.port, influxd.url)
    first = ServerProcess(cfg, tmp_path / "first.log")
    first.start()
    try:
        wait_server_subscribed(mosquitto.port)
        second = ServerProcess(cfg, tmp_path / "second.log")
        second.start()
        assert second.process.proc is not None and second.process.proc.wait(30) == AnotherServer.exit_code
        out = second.output().strip()
        assert out.startswith("error: another gatewatch server (pid ") and len(out.splitlines()) == 1
        assert f"is using the spool {tmp_path / 'spool.sqlite3'}" in out
        assert first.alive()
    finally:
        assert first.stop() == 0


def test_a_second_server_with_the_same_client_id_yields_to_the_first(tmp_path: Path, mosquitto, influxd) -> None:
    # another machine (its own spool), configured with the same client id by mistake
    messages = [counts_message("u1", "l1", i) for i in range(300)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg_a = write_config(tmp_path / "a", mosquitto.port, influxd.url, validation={"gates": DECLARED},
                         mqtt={"client_id": "gw-central"})
    cfg_b = write_config(tmp_path / "b", mosquitto.port, influxd.url, validation={"gates": DECLARED},
                         mqtt={"client_id": "gw-central"})
    first = ServerProcess(cfg_a, tmp_path / "a" / "server.log")
    first.start()
    try:
        wait_server_subscribed(mosquitto.port)
        wait_for(lambda: "mqtt connected" in first.output(), 10, "the first server")
        pub = Publisher(mosquitto.port, "edge-sim")
        for m in messages[:100]:
            pub.send_message(m)
        pub.flush()
        second = ServerProcess(cfg_b, tmp_path / "b" / "server.log")
        second.start()
        for m in messages[100:]:
            pub.send_message(m)
        pub.close()
        assert second.process.proc is not None and second.process.proc.wait(60) == AnotherServer.exit_code
        wait_for(lambda: stored(influxd) == expected_counts(messages), 60, "every record, by the first server")
        assert first.alive()
    finally:
        assert first.stop() == 0
    last = second.output().strip().splitlines()[-1]
    assert last.startswith("error: another gatewatch server ("), second.output()
    assert first.process.proc is not None
    pid = first.process.proc.pid
    assert f"{tmp_path / 'a' / 'spool.sqlite3'}, pid {pid}) is connected with client id 'gw-central'" in last
    assert "Traceback" not in second.output() + first.output()
    assert first.output().count("started after us; it stands down") == 1


def stored(db: object) -> dict[tuple[str, str, str, str, int], int]:
    try:
        return influx_counts(db)
    except QueryError:  # "database not found" until the server's first write
        return {}
