"""The cross-gate view on a real influxd: three gates' records through the server's summary into
`gate_summary_v1` / `province_summary_v1`, and every panel of the cross-gate dashboard returns the
numbers worked out here from the dataset's own definition (not from server/summary.py). A real
`gatewatch server` publishes the same summaries retained on MQTT.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from server.config import InfluxConfig, SummaryConfig
from server.schema import lines, summary_points
from server.sinks import InfluxV1Sink
from server.summary import GateSummaries
from tests.deploy.test_grafana import actual, hour, interpolate, load_dashboards, norm, ns
from tests.fixtures.influx import Influx1, start_influxd
from tests.fixtures.mosquitto import Broker
from tests.fixtures.procs import wait_for
from tests.runtime.helpers import Subscriber
from tests.server.helpers import publish_all, server_process
from wire.payloads import CountsMessage, QueueStats, VehicleClass
from wire.summary import PROVINCE_SUMMARY, GateSummary, ProvinceSummary

#: gate -> its lanes (all on one unit per gate)
GATES = {"huu-nghi": ["l1", "l2"], "tan-thanh": ["l1"], "chi-ma": ["l1"]}
WINDOW_S = 60.0
MINUTES = 120
#: chi-ma's unit stops after this minute: it goes stale, then drops out of the ranking
SILENT_FROM = 80
CFG = SummaryConfig(interval_s=60, window_s=900, stale_s=120)


def figures(gate: str, lane: str, i: int) -> tuple[int, int, int, float]:
    """(trucks in, trucks out, cars out, queue mean) of window i: each gate its own pattern."""
    if gate == "huu-nghi":  # busy: long queues, clears fast
        return (3 + i % 2, 2 + (i % 3 == 0), 4, 20.0 + (i % 7) + (lane == "l2") * 5)
    if gate == "tan-thanh":  # quiet, short queue; after minute 60 nothing clears (a closed booth)
        return (1, 0 if i >= 60 else 1 + i % 2, 0 if i >= 60 else 2, 3.0 + i / 30)
    return (2, 2, 3, 8.0 + (i % 5))  # chi-ma


def message(gate: str, lane: str, i: int, start: datetime) -> CountsMessage:
    t_in, t_out, c_out, q = figures(gate, lane, i)
    return CountsMessage(
        gate=gate, unit="cam1", lane=lane, seq=i + 1, window_start=start + timedelta(seconds=i * WINDOW_S),
        window_s=WINDOW_S,
        counts={VehicleClass.TRUCK: {"in": t_in, "out": t_out}, VehicleClass.CAR: {"in": 5, "out": c_out}},
        queue=QueueStats(length_max=int(q) + 2, length_mean=q, stationary_max=int(q)),
    )


def windows(start: datetime) -> list[list[CountsMessage]]:
    """Minute by minute, every lane's window (chi-ma's only until it goes silent)."""
    return [[message(g, lane, i, start) for g, lanes in GATES.items() for lane in lanes
             if not (g == "chi-ma" and i >= SILENT_FROM)] for i in range(MINUTES)]


# -- the summary, worked out from the definition -------------------------------------------------


def expected_at(start: datetime, minute: int) -> dict[str, dict[str, Any]]:
    """Each gate's figures at the end of `minute` (the summary written then), by the docs' definition."""
    at = minute + 1  # in minutes since start
    out: dict[str, dict[str, Any]] = {}
    for gate, lanes in GATES.items():
        arriving = cleared = queued = clearing = 0.0
        n_lanes = reporting = 0
        for lane in lanes:
            ends = [i for i in range(MINUTES) if not (gate == "chi-ma" and i >= SILENT_FROM)
                    and at - 15 < i + 1 <= at]  # window i ends at minute i + 1; 15 min trailing window
            if not ends:
                continue
            n_lanes += 1
            hours = len(ends) / 60  # 60 s windows
            arriving += sum(figures(gate, lane, i)[0] for i in ends) / hours
            cleared += sum(figures(gate, lane, i)[1] for i in ends) / hours
            vehicles = sum(figures(gate, lane, i)[1] + figures(gate, lane, i)[2] for i in ends) / hours
            if ends[-1] + 1 > at - 2:  # fresh: ended less than 120 s ago
                reporting += 1
                queued += figures(gate, lane, ends[-1])[3]
                clearing += vehicles
        if not n_lanes:
            continue
        wait = 0.0 if queued == 0 else (queued / clearing * 3600 if clearing else None)
        out[gate] = {"arriving": arriving, "cleared": cleared, "queued": queued, "wait": wait,
                     "reporting": reporting}
    ranked = sorted((g for g in out if out[g]["reporting"]),
                    key=lambda g: (out[g]["wait"] is None, out[g]["wait"] or 0, -out[g]["cleared"], g))
    for g in out:
        out[g]["rank"] = ranked.index(g) + 1 if g in ranked else 0
    best = ranked[0] if ranked and out[ranked[0]]["wait"] is not None else None
    out["_best"] = {"gate": best, "wait": out[best]["wait"] if best else None, "t": start + timedelta(minutes=at)}
    return out


@dataclass
class SummaryDb:
    db: Influx1
    start: datetime
    expected: list[dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def summary_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SummaryDb]:
    db = start_influxd(tmp_path_factory.mktemp("summary-db"))
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    summaries = GateSummaries(CFG)
    sink = InfluxV1Sink(InfluxConfig(url=db.url))
    try:
        batch: list[str] = []
        for minute in windows(start):
            for m in minute:
                summaries.on_record(m)
            at = summaries.bucket()
            assert at is not None
            gates, province = summaries.summarize(at)
            batch += lines(summary_points(gates, province))
        sink.write(batch)
        yield SummaryDb(db, start, [expected_at(start, i) for i in range(MINUTES)])
    finally:
        sink.close()
        db.stop()


def test_summaries_match_the_definition(summary_db: SummaryDb) -> None:
    rows = summary_db.db.rows('SELECT * FROM "gate_summary_v1" GROUP BY "gate"')
    assert len(rows) == sum(len([g for g in e if g != "_best"]) for e in summary_db.expected)
    got = {(r["gate"], int(r["time"])): r for r in rows}
    for e in summary_db.expected:
        t = ns(e["_best"]["t"])
        for gate, want in e.items():
            if gate == "_best":
                continue
            r = got[(gate, t)]
            assert r["trucks_arriving_per_h"] == pytest.approx(want["arriving"], abs=1e-3)
            assert r["trucks_cleared_per_h"] == pytest.approx(want["cleared"], abs=1e-3)
            assert r["vehicles_queued"] == pytest.approx(want["queued"], abs=1e-3)
            assert r["rank"] == want["rank"] and r["lanes_reporting"] == want["reporting"]
            if want["wait"] is None:
                assert r["expected_wait_s"] is None
            else:
                assert r["expected_wait_s"] == pytest.approx(want["wait"], abs=0.05)
    # the scenario covers what the ranking has to handle
    assert {e["_best"]["gate"] for e in summary_db.expected} >= {"tan-thanh", "chi-ma"}
    assert any(e["tan-thanh"]["wait"] is None and e["tan-thanh"]["rank"] > 0 for e in summary_db.expected)
    assert any(e.get("chi-ma", {}).get("rank") == 0 for e in summary_db.expected)
    assert "chi-ma" not in summary_db.expected[-1]


def per_hour(exp: list[dict[str, dict[str, Any]]], key: str, how: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    groups: dict[tuple[int, str], list[Any]] = defaultdict(list)
    gates = {g for e in exp for g in e if g != "_best"}
    first = hour(exp[0]["_best"]["t"])
    for h in range(first, hour(exp[-1]["_best"]["t"]) + 1, 3600 * 10**9):  # fill(null): every bucket, every gate
        for g in gates:
            groups[(h, g)] = []
    for e in exp:
        for gate, want in e.items():
            if gate != "_best":
                groups[(hour(e["_best"]["t"]), gate)].append(want[key])
    out = {}
    for k, vs in groups.items():
        present = [v for v in vs if v is not None]
        out[k] = (norm(how(present)) if present else None,)
    return out


def last(values: list[Any]) -> Any:
    return values[-1]


def expected_panels(s: SummaryDb) -> dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[Any, Any]]]:
    exp = s.expected
    final: dict[str, dict[str, Any]] = {}
    for e in exp:
        for gate, want in e.items():
            if gate != "_best":
                final.setdefault(gate, {}).update({k: v for k, v in want.items() if v is not None})
    best = exp[-1]["_best"]
    return {
        "Best gate now": (("time",), ("best_gate", "expected_wait_s"),
                          {(0,): (best["gate"], norm(best["wait"]))}),
        "Gates ranked now": (("gate",), ("rank", "expected_wait_s", "trucks_cleared_per_h", "trucks_arriving_per_h",
                                         "vehicles_queued", "lanes_reporting"),
                             {(g,): (norm(f["rank"]), norm(f.get("wait")), norm(f["cleared"]), norm(f["arriving"]),
                                     norm(f["queued"]), norm(f["reporting"])) for g, f in final.items()}),
        "Expected truck wait by gate": (("time", "gate"), ("last",), per_hour(exp, "wait", last)),
        "Trucks arriving per hour by gate": (("time", "gate"), ("mean",), per_hour(exp, "arriving", mean)),
        "Trucks cleared per hour by gate": (("time", "gate"), ("mean",), per_hour(exp, "cleared", mean)),
        "Vehicles queued by gate": (("time", "gate"), ("mean",), per_hour(exp, "queued", mean)),
        "Best gate over time": (("time",), ("best_gate",), {(ns(e["_best"]["t"]),): (e["_best"]["gate"],)
                                                            for e in exp}),
    }


def close(got: dict[Any, Any], want: dict[Any, Any]) -> None:
    assert set(got) == set(want)
    for k in want:
        for g, w in zip(got[k], want[k], strict=True):
            if isinstance(w, float) and isinstance(g, float):
                assert g == pytest.approx(w, abs=0.05), k
            else:
                assert g == w, k


PANELS = load_dashboards()["cross-gate.json"]["panels"]


def test_every_panel_has_an_expectation(summary_db: SummaryDb) -> None:
    """A new panel without numbers to check fails here, not silently."""
    assert {p["title"] for p in PANELS} == set(expected_panels(summary_db))


@pytest.mark.parametrize("title", [p["title"] for p in PANELS])
def test_panel_query_returns_expected_numbers(summary_db: SummaryDb, title: str) -> None:
    (panel,) = [p for p in PANELS if p["title"] == title]
    keys, values, want = expected_panels(summary_db)[title]
    (tgt,) = panel["targets"]
    end = summary_db.start + timedelta(minutes=MINUTES, seconds=30)
    got = actual(summary_db.db, interpolate(tgt["query"], summary_db.start, end), keys, values)
    if keys == ("time",) and (0,) in want:  # a single last() row is stamped with the range's start
        (row,) = got.values()
        got = {(0,): row}
    assert want
    close(got, want)


def test_a_running_server_stores_and_publishes_the_summaries(
    mosquitto: Broker, influxd: Influx1, tmp_path: Path
) -> None:
    """Three gates' records through mosquitto into `gatewatch server`: the retained province record
    ranks them, each gate's summary is retained, and the same figures are in influxd."""
    start = datetime.fromtimestamp((datetime.now(UTC).timestamp() // 3600) * 3600 - 86_400, UTC)
    minutes = 20
    messages = [m for minute in windows(start)[:minutes] for m in minute]
    want = expected_at(start, minutes - 1)
    watch = Subscriber(mosquitto.port, "gatewatch/v1/_province/#", client_id="summary-watch")
    validation = {"gates": {g: ["cam1"] for g in GATES}}
    try:
        with server_process(tmp_path, mosquitto.port, influxd.url, validation=validation,
                            summary={"interval_s": 60, "window_s": 900, "stale_s": 120}):
            publish_all(mosquitto.port, messages)

            def province() -> ProvinceSummary | None:
                got = [ProvinceSummary.model_validate_json(p) for t, p, _ in watch.messages if t == PROVINCE_SUMMARY]
                return got[-1] if got and got[-1].at == want["_best"]["t"] else None

            wait_for(lambda: province() is not None, 30, "the province summary of the last minute")
            p = province()
            assert p is not None
            assert [r.gate for r in p.ranking] == sorted((g for g in GATES), key=lambda g: want[g]["rank"])
            assert p.best_gate == want["_best"]["gate"]
            gates = {t: GateSummary.model_validate_json(pl) for t, pl, _ in watch.messages if t != PROVINCE_SUMMARY}
            for gate in GATES:
                g = gates[f"gatewatch/v1/_province/{gate}/summary"]
                assert g.trucks_cleared_per_h == pytest.approx(want[gate]["cleared"], abs=1e-3)
                assert g.rank == want[gate]["rank"]
            wait_for(lambda: len(influxd.rows(
                f'SELECT * FROM "gate_summary_v1" WHERE time = {ns(want["_best"]["t"])}')) == len(GATES), 20,
                "the last minute's summary points in influxd")
    finally:
        watch.close()
    retained = Subscriber(mosquitto.port, "gatewatch/v1/_province/#", client_id="summary-late")
    try:
        wait_for(lambda: len(retained.messages) == len(GATES) + 1, 5, "the retained summaries")
        assert all(r for _, _, r in retained.messages)
        assert json.loads(next(p for t, p, _ in retained.messages if t == PROVINCE_SUMMARY))["best_gate"] == \
            want["_best"]["gate"]
    finally:
        retained.close()
