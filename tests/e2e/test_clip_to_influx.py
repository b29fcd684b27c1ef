"""End to end: a real clip through `gatewatch edge`, a real mosquitto and `gatewatch server` into a
real influxd (v1 /write) and a real victoria-metrics (v2 write API) at once. What InfluxQL reads
back equals what `gatewatch replay` computes for the same clip and config, window by window."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from edge.devtools.records_io import read_jsonl
from tests import shared_data
from tests.conftest import ROOT
from tests.fixtures.influx import Influx1, Victoria
from tests.fixtures.mosquitto import Broker
from tests.fixtures.procs import wait_for
from tests.server.helpers import expected_counts, influx_counts, server_process, victoria_counts
from wire.payloads import CountsMessage

pytestmark = pytest.mark.model

GATE, UNIT = "huu-nghi", "cam1"
CLIP = "ahmetozlu_input_video.mp4"  # 8 vehicles, one of them a pickup (truck)


def test_clip_counts_reach_influxdb_exactly(
    mosquitto: Broker, influxd: Influx1, victoria: Victoria, tmp_path: Path
) -> None:
    clip = shared_data.footage(CLIP)
    # a day ago, on a window boundary: inside the server's clock-skew bound and any retention
    start = datetime.fromtimestamp((time.time() // 10) * 10 - 86_400, UTC).isoformat()
    config = tmp_path / "unit.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "gate": GATE,
                "unit": UNIT,
                "source": {"kind": "file", "path": str(clip), "start_time": start},
                "model": {"path": str(shared_data.model())},
                "lanes": [
                    {
                        "id": "in",
                        "line": {"a": [0.0, 0.5], "b": [1.0, 0.5]},
                        "directions": ["down", "up"],
                        "queue_zone": [[0.0, 0.25], [1.0, 0.25], [1.0, 0.5], [0.0, 0.5]],
                    }
                ],
                "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
                "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            }
        )
    )
    out = tmp_path / "replay.jsonl"
    replay = subprocess.run(
        [sys.executable, "-m", "gatewatch", "replay", str(clip), "--config", str(config), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]
    records = read_jsonl(out)
    assert sum(r.total() for r in records) == 8  # the clip's hand count
    expected = expected_counts(CountsMessage.from_record(r, seq=i + 1) for i, r in enumerate(records))

    validation = {"gates": {GATE: [UNIT]}}
    # two servers side by side, each with its own client id (and so its own persistent session)
    with (
        server_process(
            tmp_path / "v1", mosquitto.port, influxd.url, validation=validation, mqtt={"client_id": "e2e-server-v1"}
        ) as v1,
        server_process(
            tmp_path / "v2",
            mosquitto.port,
            victoria.url,
            api="v2",
            validation=validation,
            mqtt={"client_id": "e2e-server-v2"},
        ) as v2,
    ):
        edge = subprocess.run(
            [sys.executable, "-m", "gatewatch", "edge", "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert edge.returncode == 0, edge.stderr[-2000:]
        read: Callable[[], Counter[tuple[str, str, str, str, int]]]
        for name, read, server in (
            ("influxd", lambda: influx_counts(influxd), v1),
            ("victoria-metrics", lambda: victoria_counts(victoria), v2),
        ):

            def stored_as_expected(read: Callable[[], Counter[tuple[str, str, str, str, int]]] = read) -> bool:
                return read() == expected

            try:
                wait_for(stored_as_expected, 60, f"the clip's counts in {name}")
            except TimeoutError as exc:
                got = read()
                diff = {
                    k: (expected.get(k), got.get(k)) for k in set(expected) | set(got) if expected.get(k) != got.get(k)
                }
                raise AssertionError(
                    f"{exc}; (expected, stored) differ at {diff}; server log:\n"
                    f"{server.output()[-3000:]}\nedge log:\n{edge.stderr[-3000:]}"
                ) from None

    # what an operator's dashboard asks: totals by class over the clip, in InfluxQL
    rows = influxd.rows(f'SELECT sum("count") FROM lane_counts WHERE unit = \'{UNIT}\' GROUP BY "class"')
    by_class = Counter({r["class"]: int(r["sum"]) for r in rows})
    replay_by_class: Counter[str] = Counter()
    for r in records:
        for cls, dirs in r.counts.items():
            replay_by_class[cls.value] += sum(dirs.values())
    assert by_class == replay_by_class
    assert sum(by_class.values()) == 8
