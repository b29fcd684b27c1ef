"""`gatewatch demo --short`: the full stack on a real clip; counts reach InfluxDB; nothing left running."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests import shared_data
from tests.conftest import ROOT
from tests.fixtures.procs import Service, require_binary

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
    conf = run / "influxdb" / "influxdb.conf"
    port = int(re.findall(r'bind-address = "127.0.0.1:(\d+)"', conf.read_text())[-1])
    db = Service([require_binary("influxd", "/usr/bin/influxd"), "-config", str(conf)], port, tmp_path / "influxd.log")
    db.start()
    try:
        q = urllib.parse.urlencode({"db": "gatewatch", "q": 'SELECT sum("count") FROM lane_counts GROUP BY "class"'})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/query?{q}", timeout=10) as resp:
            series = json.load(resp)["results"][0]["series"]
        assert {s["tags"]["class"]: s["values"][0][1] for s in series} == {"car": 11}
    finally:
        db.stop()
