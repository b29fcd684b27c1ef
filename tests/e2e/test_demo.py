"""`gatewatch demo --short`: the full stack on a real clip; counts reach InfluxDB; nothing left running."""

from __future__ import annotations

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
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())
    assert "11 vehicles counted, published over MQTT and stored in InfluxDB" in out, out

    # nothing the demo started is still running
    left = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if str(run) in " ".join(p.info["cmdline"] or [])]
    assert left == []

    # the data is really on disk: start the demo's influxd again and ask it
    db = start_influxd(tmp_path / "influxd", conf=run / "influxdb" / "influxdb.conf")
    try:
        series = db.query('SELECT sum("count") FROM lane_counts GROUP BY "class"')
        assert {s["tags"]["class"]: s["values"][0][1] for s in series} == {"car": 11}
    finally:
        db.stop()
