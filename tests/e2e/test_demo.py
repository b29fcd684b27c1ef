"""`gatewatch demo --short`: the full stack on a real clip; counts reach InfluxDB; nothing left running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests import shared_data
from tests.conftest import ROOT
from tests.fixtures.influx import start_influxd
from tests.fixtures.procs import require_binary

pytestmark = pytest.mark.model


def test_demo_short_mode(tmp_path: Path) -> None:
    shared_data.footage("degirum_Traffic.mp4")
    shared_data.model()
    require_binary("mosquitto", "/usr/sbin/mosquitto")
    run = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "gatewatch", "demo", "--short", "--run-dir", str(run)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},  # one line per table row
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())
    assert "11 vehicles counted, published over MQTT and stored in InfluxDB" in out, out
    # the end reads as the end of a replay: the state while the footage played, not the sign-off
    # (unit_offline) or the clip ending inside its last window (camera_down); 11 cars passing through
    # the queue zone of a motorway are not a congested queue
    final = out[out.rindex("replay finished"):]
    assert "replay finished" in final and "cam1 │ cam1-l1" in out, out
    row = out[out.rindex("cam1 │ cam1-l1"):].split("│")
    assert row[5].strip() == "green" and row[6].strip() == "replay finished", row[:8]
    assert "unit_offline" not in out and "camera_down" not in out
    assert (run / "final-table.svg").read_text().startswith("<svg")

    # nothing the demo started is still running
    left = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if str(run) in " ".join(p.info["cmdline"] or [])]
    assert left == []

    # the data is really on disk: start the demo's influxd again and ask it
    db = start_influxd(tmp_path / "influxd", conf=run / "influxdb" / "influxdb.conf")
    try:
        series = db.query('SELECT sum("count") FROM lane_counts GROUP BY "class"')
        # every class of the lane is written, zeros included (a dashboard sums a zero, not a gap)
        assert {s["tags"]["class"]: s["values"][0][1] for s in series} == {"car": 11, "truck": 0, "bus": 0,
                                                                          "motorbike": 0}
    finally:
        db.stop()
