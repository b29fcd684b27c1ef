"""Acceptance of the integrations on a real clip: `gatewatch edge` (real model, paced at recorded
speed) with Home Assistant discovery and /metrics on, a real mosquitto, `gatewatch server` with
/metrics on, a real influxd.

- The lane states Home Assistant reads carry, window by window, what `gatewatch replay` computed
  for the same clip and config, and the running totals add them up.
- /metrics of the unit and of the server, scraped all through the replay, move in step with what
  was published and what was stored: never behind what a subscriber or the database already saw,
  never beyond what the replay computed, and equal to it at the end.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from edge.devtools.records_io import read_jsonl
from tests import shared_data
from tests.conftest import ROOT
from tests.fixtures.influx import Influx1
from tests.fixtures.mosquitto import Broker
from tests.fixtures.procs import free_port, wait_for
from tests.runtime.helpers import Subscriber
from tests.server.helpers import server_process
from wire.homeassistant import LaneState
from wire.payloads import CountsMessage, VehicleClass, decode_message

pytestmark = pytest.mark.model

GATE, UNIT, LANE = "huu-nghi", "cam1", "main"
CLIP = "degirum_Traffic.mp4"  # 11 cars in 11.2 s: three 5 s windows

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples | None:
    """Every sample of a /metrics page, or None while nothing listens there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def crossings(samples: Samples) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for (name, labels), v in samples.items():
        if name == "gatewatch_edge_crossings_total":
            d = dict(labels)
            out[(d["lane"], d["class"], d["direction"])] = int(v)
    return out


def counted(messages: list[CountsMessage]) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for m in messages:
        for cls, dirs in m.counts.items():
            for d, n in dirs.items():
                out[(m.lane, cls.value, d)] += n
    return out


def counts_seen(sub: Subscriber) -> list[CountsMessage]:
    """The counts records a subscriber of the unit's topics has received (lane states skipped)."""
    return [m for t, p, _ in list(sub.messages) if t.endswith("/counts")
            for m in [decode_message(t, p)] if isinstance(m, CountsMessage)]


@dataclass
class Scrape:
    seen_counts: list[CountsMessage]  # what the subscriber had received before the scrape
    stored_points: int  # lane_queue + unit_status points in influxd before the scrape
    edge: Samples | None
    server: Samples | None


def stored_points(db: Influx1) -> int:
    n = 0
    for q in ('SELECT count("total") FROM lane_queue', 'SELECT count("state") FROM unit_status'):
        try:
            series = db.query(q)
        except Exception:  # no database before the server's first write
            continue
        n += int(series[0]["values"][0][1]) if series else 0
    return n


def test_home_assistant_states_and_metrics_follow_a_real_replay(
    mosquitto: Broker, influxd: Influx1, tmp_path: Path
) -> None:
    clip = shared_data.footage(CLIP)
    start = datetime.fromtimestamp((time.time() // 10) * 10 - 86_400, UTC).isoformat()
    edge_port, server_port = free_port(), free_port()
    config = tmp_path / "unit.yaml"
    config.write_text(yaml.safe_dump({
        "gate": GATE, "unit": UNIT,
        "source": {"kind": "file", "path": str(clip), "start_time": start, "realtime": True},
        "model": {"path": str(shared_data.model())},
        "lanes": [{"id": LANE, "line": {"a": [0.0, 0.5], "b": [1.0, 0.5]}, "directions": ["down", "up"],
                   "queue_zone": [[0.0, 0.25], [1.0, 0.25], [1.0, 0.5], [0.0, 0.5]]}],
        "counting": {"window_s": 5},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        "health": {"interval_s": 3600},
        "homeassistant": {"enabled": True},
        "metrics": {"enabled": True, "port": edge_port},
    }))
    out = tmp_path / "replay.jsonl"
    replay = subprocess.run(
        [sys.executable, "-m", "gatewatch", "replay", str(clip), "--config", str(config), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]
    records = read_jsonl(out)
    assert len(records) == 3 and sum(r.total() for r in records) == 11
    final = counted([CountsMessage.from_record(r, seq=0) for r in records])

    sub = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/#", client_id="e2e-watch")
    scrapes: list[Scrape] = []
    with server_process(tmp_path / "server", mosquitto.port, influxd.url, validation={"gates": {GATE: [UNIT]}},
                        metrics={"enabled": True, "port": server_port}) as server:
        edge_log = tmp_path / "edge.log"
        with edge_log.open("wb") as log:
            edge = subprocess.Popen([sys.executable, "-m", "gatewatch", "edge", "--config", str(config)], cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            while edge.poll() is None:
                seen = counts_seen(sub)
                points = stored_points(influxd)
                scrapes.append(Scrape(seen, points, scrape(edge_port), scrape(server_port)))
                time.sleep(0.2)
        finally:
            if edge.poll() is None:
                edge.kill()
        assert edge.wait(30) == 0, edge_log.read_text()[-3000:]
        published = counts_seen(sub)
        assert [m.record() for m in published] == records
        unit_messages = len(published) + 2  # and the status online, then offline
        wait_for(lambda: value(scrape(server_port) or {}, "gatewatch_server_messages_stored_total")
                 == unit_messages, 30, "the server to store every message")
        end = scrape(server_port)
        assert end is not None
        assert value(end, "gatewatch_server_messages_received_total") == unit_messages
        assert stored_points(influxd) == unit_messages
        assert value(end, "gatewatch_server_unit_last_seen_timestamp_seconds", gate=GATE, unit=UNIT) > time.time() - 60
        assert value(end, "gatewatch_server_write_seconds_count") >= 1
        assert "Traceback" not in server.output()

    # -- the unit's /metrics, in step with what it published ---------------------------------------
    during = [s for s in scrapes if s.edge is not None]
    assert len(during) >= 10, "the unit should have been scraped all through the replay"
    frames = [value(s.edge, "gatewatch_edge_frames_total") for s in during if s.edge]
    assert frames == sorted(frames) and frames[-1] > frames[0]
    records_seen = sorted({value(s.edge, "gatewatch_edge_records_total") for s in during if s.edge})
    # it moved while we watched: 0, then the first window's record (at about 6 s of the 11 s clip); the
    # second and third windows close within the clip's last second, often after the last scrape
    assert len(records_seen) >= 2 and records_seen[0] < records_seen[-1], records_seen
    for s in during:
        assert s.edge is not None
        n = value(s.edge, "gatewatch_edge_records_total")
        assert len(s.seen_counts) <= n <= len(records)  # never behind what was published
        assert value(s.edge, "gatewatch_edge_mqtt_acked_total") <= n
        got = crossings(s.edge)
        assert counted(s.seen_counts) <= got <= final, (got, counted(s.seen_counts), final)
        assert value(s.edge, "gatewatch_edge_mqtt_connected") in (0.0, 1.0)
    last = during[-1].edge
    assert last is not None
    assert any(name == "gatewatch_edge_info" and (("gate", GATE) in labels) and (("unit", UNIT) in labels)
               for name, labels in last)
    assert value(last, "gatewatch_edge_stage_seconds_count", stage="inference") == value(
        last, "gatewatch_edge_frames_total")
    assert value(last, "gatewatch_edge_detections_total") > 0

    # -- the server's /metrics, in step with what it stored ----------------------------------------
    server_scrapes = [s for s in scrapes if s.server is not None]
    stored = [value(s.server, "gatewatch_server_messages_stored_total") for s in server_scrapes if s.server]
    assert stored == sorted(stored) and len(set(stored)) >= 2, stored
    for s in server_scrapes:
        assert s.server is not None
        assert value(s.server, "gatewatch_server_messages_stored_total") >= s.stored_points
        assert value(s.server, "gatewatch_server_messages_stored_total") <= value(
            s.server, "gatewatch_server_messages_received_total")

    # -- Home Assistant's lane state: the replay's windows, totals summed ---------------------------
    states = [LaneState.model_validate_json(p) for t, p, _ in sub.messages if t.endswith(f"/lane/{LANE}") and p]
    assert [s.window_start for s in states] == [r.window_start for r in records]
    running = dict.fromkeys(VehicleClass, 0)
    for state, r in zip(states, records, strict=True):
        window = {c: sum(r.counts.get(c, {}).values()) for c in VehicleClass}
        running = {c: running[c] + window[c] for c in VehicleClass}
        assert (state.window, state.total, state.queue, state.expected_wait_s) == (
            window, running, r.queue.length_max, r.queue.expected_wait_s)
    assert states[-1].total[VehicleClass.CAR] == 11
    retained = Subscriber(mosquitto.port, f"gatewatch/v1/{GATE}/{UNIT}/lane/+", client_id="e2e-ha-late")
    try:
        wait_for(lambda: bool(retained.messages), 5, "the retained lane state")
        (_topic, payload, flag), = retained.messages
        assert flag and decode_lane(payload) == states[-1]
    finally:
        retained.close()
        sub.close()


def decode_lane(payload: bytes) -> LaneState:
    return LaneState.model_validate_json(payload)


def test_decode_message_leaves_lane_states_alone() -> None:
    """A lane state is not a unit message: a subscriber of the unit topics can tell and skip it."""
    from wire.errors import WireError

    with pytest.raises(WireError):
        decode_message(f"gatewatch/v1/{GATE}/{UNIT}/lane/{LANE}", b"{}")
