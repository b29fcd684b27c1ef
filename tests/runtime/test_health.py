"""Health readers on a faked sysfs / vcgencmd, and the systemd notify + watchdog seam."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from edge.service.health import read_cpu_temp, read_mem_mb, read_throttled
from edge.service.outbox import Outbox
from edge.service.runtime import EdgeRuntime, SdNotifier
from tests.runtime.helpers import FakePipeline, make_records, unit_config


def test_cpu_temp_reads_the_hottest_zone_and_tolerates_junk(tmp_path: Path) -> None:
    for i, text in enumerate(["48312\n", "61500\n", "garbage\n"]):
        (tmp_path / f"thermal_zone{i}").mkdir()
        (tmp_path / f"thermal_zone{i}" / "temp").write_text(text)
    assert read_cpu_temp(tmp_path) == 61.5
    assert read_cpu_temp(tmp_path / "none") is None  # an x86 VM with no thermal zones


def test_throttled_from_vcgencmd_where_present(tmp_path: Path) -> None:
    fake = tmp_path / "vcgencmd"
    fake.write_text("#!/bin/sh\n[ \"$1\" = get_throttled ] && echo throttled=0x50005\n")
    fake.chmod(0o755)
    assert read_throttled(str(fake)) == "0x50005"
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    assert read_throttled(str(broken)) is None
    assert 1 < read_mem_mb() < 100_000


def test_sd_notify_ready_and_watchdog_only_while_the_pipeline_moves(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(0.1)
    got: list[str] = []

    def collect(until: float) -> None:
        while time.monotonic() < until:
            try:
                got.append(server.recv(1024).decode())
            except TimeoutError:
                continue

    notifier = SdNotifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
    assert notifier.watchdog_interval_s == 0.2
    cfg = unit_config(tmp_path, 1)  # no broker on port 1: the unit must run (and buffer) anyway
    now = [1000.0]
    runtime = EdgeRuntime(cfg, Outbox(cfg.outbox.path, cfg.outbox.max_bytes), notifier=notifier,
                          monotonic=lambda: now[0], flush_timeout_s=0)
    pipeline = FakePipeline(make_records(1), hold_s=30)
    worker = threading.Thread(target=runtime.run, args=(pipeline,))
    worker.start()
    try:
        collect(time.monotonic() + 1.0)
        assert got[0].startswith("READY=1")
        pets = got.count("WATCHDOG=1")
        assert pets >= 1
        # The camera hangs: no frames, no records, and the fake clock runs past the progress limit.
        now[0] += 3600
        got.clear()
        collect(time.monotonic() + 1.0)
        assert "WATCHDOG=1" not in got  # systemd will restart a hung unit
        assert len(runtime.outbox) == 2 + runtime.health_sent  # meanwhile everything sits in the outbox
    finally:
        runtime.request_stop()
        pipeline.stop()
        worker.join(10)
        server.close()
    assert not worker.is_alive()
