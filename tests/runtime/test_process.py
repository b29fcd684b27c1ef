"""A real edge process: SIGKILL mid-run loses nothing, SIGTERM flushes and says offline, CLI errors."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from edge.service.cli import register_runtime
from edge.service.outbox import Outbox
from edge.service.seq_mark import SeqMark
from edge.stages.windows import window_floor
from tests.conftest import ROOT
from tests.fixtures.mosquitto import Broker
from tests.fixtures.procs import wait_for
from tests.runtime.edge_live_child import lanes_config
from tests.runtime.helpers import GATE, UNIT, Subscriber, unit_config
from wire.payloads import CountsMessage, StatusMessage, UnitState


def write_config(tmp: Path, port: int, **over: Any) -> Path:
    cfg = unit_config(tmp, port, **over)
    path = tmp / "unit.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


def spawn(config: Path, first: int, n: int, interval: float, hold: float, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.edge_child", str(config), str(first), str(n), str(interval),
             str(hold)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )


def outbox_rows(path: Path) -> tuple[int, int]:
    """(rows not yet sent, last seq committed), read straight from the file a process left; (0, 0)
    before the process has created it."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return (0, 0)
    try:
        depth = db.execute("SELECT COUNT(*) FROM messages WHERE acked IS NULL").fetchone()[0]
        next_seq = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
        return int(depth), int(next_seq) - 1
    except sqlite3.OperationalError:
        return (0, 0)
    finally:
        db.close()


def test_sigkill_mid_run_then_restart_on_the_same_outbox_loses_nothing(mosquitto: Broker, tmp_path: Path) -> None:
    # Drain slower than production, so each kill lands with a backlog on disk and messages in flight.
    config = write_config(tmp_path, mosquitto.port, mqtt={"drain_rate_per_s": 20.0, "max_inflight": 5})
    outbox = tmp_path / "outbox.sqlite3"
    sub = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/counts")
    log = tmp_path / "edge.log"
    try:
        last_seq = 0
        being_written: set[int] = set()  # a kill between taking a seq and committing its row
        for k, after_s in enumerate((0.7, 0.3, 1.1)):  # three kills at different moments
            proc = spawn(config, 1000 * k, 400, 0.005, 60, log)
            target = last_seq + 10
            wait_for(lambda: outbox_rows(outbox)[1] > target, 20, "the process to enqueue")  # noqa: B023
            time.sleep(after_s)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            depth, seq = outbox_rows(outbox)
            assert seq > last_seq and depth > 10, f"kill {k} should leave a backlog, left {depth}"
            mark = SeqMark(tmp_path / "outbox.sqlite3.seq")
            if mark.mark.seq > max(seq, mark.mark.settled):
                being_written.add(mark.mark.seq)
            last_seq = mark.mark.seq
            mark.close()
        assert 0 < len({m.seq for m in sub.counts()}) < last_seq

        # Restart on the same outbox; this time the source ends by itself and the unit drains.
        proc = spawn(config, 9000, 5, 0.01, 0, log)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
        assert outbox_rows(outbox)[0] == 0  # everything sent (kept until a server confirms it stored)
        box = Outbox(outbox, 1 << 30)
        final_seq, lost = box.last_seq, box.lost
        box.close()
        assert final_seq == last_seq + 10  # numbering carried on across the kills, never backwards

        wait_for(lambda: len({m.seq for m in sub.counts()}) >= final_seq - lost, 20, "every seq")
        seqs = sorted({m.seq for m in sub.counts()})
        # Everything committed before each kill arrives. Only a row the kill caught between taking
        # its seq and committing is gone (as it would have been in memory), and it is not silent:
        # its seq is a gap at the server and it is counted in the unit's `outbox_lost`.
        missing = set(range(1, final_seq + 1)) - set(seqs)
        assert missing == being_written and lost == len(missing) <= 3
        assert len({m.key for m in sub.counts()}) == len(seqs)  # and each seq is a distinct record
        dupes = len(sub.counts()) - len(seqs)
        print(f"\n3 kills, {last_seq} seqs taken before the last; after restart {len(seqs)} of {final_seq} "
              f"delivered, {lost} counted lost (caught mid-write), {dupes} duplicates")
    finally:
        sub.close()


def test_sigterm_flushes_and_publishes_offline(mosquitto: Broker, tmp_path: Path) -> None:
    config = write_config(tmp_path, mosquitto.port)
    sub = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/+")
    log = tmp_path / "edge.log"
    try:
        proc = spawn(config, 0, 3, 0.01, 120, log)  # a "live" source: 3 windows, then keeps running
        wait_for(lambda: len(sub.counts()) >= 6, 20, "records")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()[-2000:]
        wait_for(lambda: len(sub.decoded("status")) >= 2, 10, "offline status")
        states = [m.state for m in sub.decoded("status") if isinstance(m, StatusMessage)]
        assert states == [UnitState.ONLINE, UnitState.OFFLINE]
        assert "received SIGTERM" in log.read_text()
        assert outbox_rows(tmp_path / "outbox.sqlite3")[0] == 0  # all sent before going offline
    finally:
        sub.close()


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register_runtime(app)

    @app.command("noop")
    def noop() -> None:  # a second command keeps typer's multi-command layout, as in `gatewatch`
        pass

    return app


def test_validate_config_ok_and_errors_are_one_line_without_traceback(cli: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    model = tmp_path / "model.pt"
    model.write_bytes(b"not really a model")
    (tmp_path / "clip.mp4").write_bytes(b"")
    config = write_config(tmp_path, 1883, model={"path": str(model)})
    ok = runner.invoke(cli, ["edge", "--config", str(config), "--validate-config"])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("gate: huu-nghi", "gate: huu-nghi\nbogus_field: 1"))
    res = runner.invoke(cli, ["edge", "--config", str(bad), "--validate-config"])
    assert res.exit_code == 2
    assert "bogus_field" in res.output and "Traceback" not in res.output

    missing_model = tmp_path / "nomodel.yaml"
    missing_model.write_text(config.read_text().replace(str(model), str(tmp_path / "gone.pt")))
    res = runner.invoke(cli, ["edge", "--config", str(missing_model), "--validate-config"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [f"error: model not found: {tmp_path / 'gone.pt'} "
                                                "(see models/README; set model.path or GATEWATCH_MODEL)"]

    res = runner.invoke(cli, ["edge", "--config", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "config file not found" in res.output and "Traceback" not in res.output

    # --check-broker on a port where nothing listens: one line, non-zero, no traceback
    res = runner.invoke(cli, ["edge", "--config", str(config), "--check-broker"])
    assert res.exit_code == 1
    assert "unreachable" in res.output and "Traceback" not in res.output


def live_config(tmp: Path, port: int, window_s: float) -> Path:
    cfg = unit_config(tmp, port, lanes=3, counting={"window_s": window_s, "class_settle_s": 0.3})
    raw = cfg.model_dump(mode="json", exclude={"mqtt": {"password"}})
    raw["lanes"] = lanes_config(3)
    path = tmp / "unit.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def spawn_live(config: Path, totals: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.runtime.edge_live_child", str(config), str(totals)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def sigterm_mid_window(proc: subprocess.Popen[bytes], window_s: float, at: float, log: Path) -> None:
    """SIGTERM `at` seconds into the next window, well away from any window's close."""
    now = time.time()
    time.sleep(window_floor(now, window_s) + window_s + at - now)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()[-3000:]


def final_counts(msgs: list[CountsMessage]) -> dict[tuple[str, str, str], int]:
    """Totals per (lane, class, direction) over the last record sent for each window key."""
    last: dict[tuple[str, str, datetime], CountsMessage] = {}
    for m in sorted(msgs, key=lambda m: m.seq):
        last[m.key] = m
    out: dict[tuple[str, str, str], int] = {}
    for m in last.values():
        for cls, dirs in m.counts.items():
            for d, n in dirs.items():
                out[(m.lane, cls.value, d)] = out.get((m.lane, cls.value, d), 0) + n
    return out


def test_sigterm_with_three_lanes_enqueues_every_lanes_open_window(mosquitto: Broker, tmp_path: Path) -> None:
    window_s = 4.0
    config = live_config(tmp_path, mosquitto.port, window_s)
    sub = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/counts")
    log, totals = tmp_path / "edge.log", tmp_path / "totals.json"
    try:
        proc = spawn_live(config, totals, log)
        wait_for(lambda: len(sub.counts()) >= 3, 30, "a first closed window")
        sigterm_mid_window(proc, window_s, 2.5, log)
        counted = {tuple(k.split("|")): n for k, n in json.loads(totals.read_text()).items()}
        wait_for(lambda: final_counts(sub.counts()) == counted, 10, "every lane's counts")
        windows = {lane: sorted(m.window_start for m in sub.counts() if m.lane == lane) for lane in ("l1", "l2", "l3")}
        assert windows["l1"] == windows["l2"] == windows["l3"]  # the open window of every lane went out
        open_window = windows["l1"][-1]
        assert open_window.timestamp() > time.time() - window_s - 10
        per_lane = {lane: sum(n for (ln, _c, _d), n in counted.items() if ln == lane) for lane in windows}
        assert all(n > 0 for n in per_lane.values()), per_lane
        print(f"\nSIGTERM 2.5 s into a {window_s:.0f} s window: {len(windows['l1'])} windows per lane, "
              f"counts per lane {per_lane}, all sent")
    finally:
        sub.close()


def test_a_restart_inside_a_window_sends_one_merged_record(mosquitto: Broker, tmp_path: Path) -> None:
    """The SIGTERM flush sends the first part of a window; the restarted unit's part of the same
    window is merged with it and sent again as one record, never as a clash."""
    window_s = 10.0
    config = live_config(tmp_path, mosquitto.port, window_s)
    sub = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/counts")
    log = tmp_path / "edge.log"
    try:
        first = spawn_live(config, tmp_path / "totals1.json", log)
        wait_for(lambda: len(sub.counts()) >= 3, 40, "a first closed window")
        sigterm_mid_window(first, window_s, 1.5, log)  # the restart lands inside the same window
        second = spawn_live(config, tmp_path / "totals2.json", log)
        sigterm_mid_window(second, window_s, 1.5, log)
        counted: dict[tuple[str, ...], int] = {}
        for part in ("totals1.json", "totals2.json"):
            for k, n in json.loads((tmp_path / part).read_text()).items():
                counted[tuple(k.split("|"))] = counted.get(tuple(k.split("|")), 0) + n
        wait_for(lambda: final_counts(sub.counts()) == counted, 10, "both runs' counts")
        by_key: dict[tuple[str, str, datetime], list[CountsMessage]] = {}
        for m in sorted(sub.counts(), key=lambda m: m.seq):
            by_key.setdefault(m.key, []).append(m)
        twice = {k: v for k, v in by_key.items() if len({m.seq for m in v}) > 1}
        assert {k[1] for k in twice} == {"l1", "l2", "l3"}, "the shared window of every lane was merged"
        for msgs in twice.values():
            earlier, merged = msgs[0], msgs[-1]
            for cls, dirs in earlier.counts.items():
                for d, n in dirs.items():
                    assert merged.counts[cls][d] >= n  # the later record of a key is a superset
            assert merged.frames > earlier.frames
        print(f"\nrestart inside a {window_s:.0f} s window: {len(twice)} keys sent twice, the second merged; "
              f"final counts equal both runs' totals {sum(counted.values())}")
    finally:
        sub.close()
