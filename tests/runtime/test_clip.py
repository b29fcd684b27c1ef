"""Acceptance: a real clip through `gatewatch edge` (real model, real broker) publishes exactly the
records `gatewatch replay` writes for the same config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.devtools.records_io import read_jsonl
from tests import shared_data
from tests.conftest import ROOT
from tests.fixtures.mosquitto import Broker
from tests.runtime.helpers import Subscriber

pytestmark = pytest.mark.model

START = "2026-11-24T08:00:00Z"


def test_edge_publishes_what_replay_writes(mosquitto: Broker, tmp_path: Path) -> None:
    clip = shared_data.footage("degirum_Traffic.mp4")
    config = tmp_path / "unit.yaml"
    config.write_text(yaml.safe_dump({
        "gate": "huu-nghi",
        "unit": "cam1",
        "source": {"kind": "file", "path": str(clip), "start_time": START},
        "model": {"path": str(shared_data.model())},
        "lanes": [{"id": "main", "line": {"a": [0.0, 0.5], "b": [1.0, 0.5]}, "directions": ["down", "up"]}],
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        # no health message may take a seq between the two records, however slow the machine is today
        "health": {"interval_s": 3600},
    }))
    out = tmp_path / "replay.jsonl"
    replay = subprocess.run(
        [sys.executable, "-m", "gatewatch", "replay", str(clip), "--config", str(config), "--out", str(out),
         "--start", START],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]
    expected = read_jsonl(out)
    assert len(expected) == 2 and sum(r.total() for r in expected) == 11  # the clip's ground truth

    sub = Subscriber(mosquitto.port, "gatewatch/v1/huu-nghi/cam1/counts")
    try:
        edge = subprocess.run(
            [sys.executable, "-m", "gatewatch", "edge", "--config", str(config)],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )
        assert edge.returncode == 0, edge.stderr[-2000:]
        got = sub.wait_counts(len(expected), timeout=10)
        assert [m.seq for m in got] == [1, 2]
        assert [m.record() for m in got] == expected
    finally:
        sub.close()
