"""`gatewatch demo`: the whole stack on one machine, from recorded footage to InfluxDB and alerts.

It starts a private mosquitto (password + per-unit ACL, generated credentials) and a private
influxd under a run folder on free loopback ports, then `gatewatch server` and one
`gatewatch edge` per clip, all as real processes exactly as they run in production. It shows
live per-lane counts, queues and alerts from MQTT, checks with InfluxQL what reached the
database, and stops everything it started, even on Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from common.errors import GatewatchError
from common.mqtt import make_client
from edge.devtools.truth import read_ground_truth
from edge.paths import default_model, footage_dir
from edge.stages.geometry import side_names
from gatewatch.provision import server_acl, set_mosquitto_password, unit_acl, unit_username
from gatewatch.services import Broker, Influx1, Process, QueryError, start_influxd, start_mosquitto
from wire.errors import WireError
from wire.payloads import ActiveAlert, AlertLevel, AlertMessage, CountsMessage, StatusMessage, UnitState, decode_message

GATE = "demo"
SERVER_USER = "demo-server"
DEFAULT_CLIPS = (
    "degirum_Traffic.mp4",
    "ahmetozlu_input_video.mp4",
    "opencv4nodejs_traffic.mp4",
    "bgslibrary_dataset_video03.avi",
)


class DemoError(GatewatchError):
    """The demo cannot run: a missing clip or model, a unit that failed, counts that never reached InfluxDB."""


@dataclass
class Clip:
    unit: str
    path: Path
    line: tuple[tuple[float, float], tuple[float, float]]


def pick_clips(names: list[str] | None, short: bool) -> list[Clip]:
    folder = footage_dir()
    lines = {}
    truth = folder / "ground_truth.csv"
    if truth.exists():
        lines = {r.video: r.line for r in read_ground_truth(truth)}
    chosen = names or list(DEFAULT_CLIPS[:1] if short else DEFAULT_CLIPS)
    clips = []
    for i, name in enumerate(chosen, 1):
        path = Path(name) if Path(name).exists() else folder / name
        if not path.is_file():
            raise DemoError(f"clip not found: {name} (looked in {folder})")
        clips.append(Clip(f"cam{i}", path.resolve(), lines.get(path.name, ((0.0, 0.5), (1.0, 0.5)))))
    return clips


#: the demo's congestion rule: vehicles *standing* in the queue zone, not vehicles passing through it.
#: The clips are free-flowing roads, where a busy zone is traffic, not a queue; by the default metric
#: (`length_max`, everything in the zone) an 11-car motorway clip would read "congested".
CONGESTED = {"metric": "stationary_max", "raise_at": 3, "raise_for_s": 10, "clear_below": 1, "clear_for_s": 10}
#: alerts that a replay raises by ending, not by anything on the road (see `LaneView.while_playing`)
END_OF_REPLAY = ("unit_offline", "camera_down")


@dataclass
class LaneView:
    counts: dict[str, int] = field(default_factory=dict)
    queue: int = 0
    standing: int = 0
    expected_wait_s: float | None = None
    #: (start, end, camera_up) of the lane's latest window
    last_window: tuple[float, float, float] | None = None
    alert: AlertMessage | None = None

    def while_playing(self, finished: bool) -> list[ActiveAlert]:
        """The lane's alerts as they stood while its footage played: once the unit has finished, the
        alerts its ending raised are left out. `unit_offline`: the unit signed off after its clip.
        `camera_down` raised at the end of the lane's last window when the camera delivered frames
        for only part of it: the clip ended inside that window, the camera did not fail."""
        active = list(self.alert.active) if self.alert else []
        if not finished:
            return active
        end_of_clip = self.last_window is not None and self.last_window[2] < 1.0
        return [a for a in active if not (
            a.rule == "unit_offline"
            or (a.rule == "camera_down" and end_of_clip and self.last_window is not None
                and a.since.timestamp() >= self.last_window[1] - 1e-6)
        )]


def describe(active: list[ActiveAlert]) -> str:
    """`orange: congested (queue 5 >= 3 for 10 s)`: the level, then each rule with why it holds."""
    if not active:
        return "green"
    level = max((a.level for a in active), key=lambda lv: lv.rank)
    rules = "; ".join(f"{a.rule} ({a.detail})" if a.detail and a.rule != "gate_level" else a.rule for a in active)
    return f"{level.value}: {rules}" if level != AlertLevel.GREEN else f"green ({rules})"


class LiveView:
    """Reads the stack's own MQTT traffic (as the server account) to show what operators would."""

    def __init__(self, port: int, password: str) -> None:
        self.lanes: dict[tuple[str, str], LaneView] = {}
        self.alerts: dict[str, AlertMessage] = {}
        #: units whose last status says offline: their clip has played and they signed off
        self.signed_off: set[str] = set()
        self.lock = threading.Lock()
        self.client = make_client("demo-view", username=SERVER_USER, password=password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"gatewatch/v1/{GATE}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            m = decode_message(msg.topic, bytes(msg.payload))
        except WireError:
            return
        with self.lock:
            if isinstance(m, CountsMessage):
                view = self.lanes.setdefault((m.unit, m.lane), LaneView())
                for cls, dirs in m.counts.items():
                    for d, n in dirs.items():
                        view.counts[f"{cls.value} {d}"] = view.counts.get(f"{cls.value} {d}", 0) + n
                view.queue = m.queue.length_max
                view.standing = m.queue.stationary_max
                view.expected_wait_s = m.queue.expected_wait_s
                start = m.window_start.timestamp()
                view.last_window = (start, start + m.window_s, m.camera_up)
            elif isinstance(m, AlertMessage):
                self.alerts[m.lane] = m
            elif isinstance(m, StatusMessage):
                if m.state == UnitState.OFFLINE:
                    self.signed_off.add(m.unit)
                else:
                    self.signed_off.discard(m.unit)

    def total(self) -> int:
        with self.lock:
            return sum(sum(v.counts.values()) for v in self.lanes.values())

    def table(self, status: str, finished: set[str] | None = None) -> Table:
        """One row per lane. `finished`: units whose replay is over; their `now` reads "replay
        finished" and their alert column shows the state while the footage played."""
        finished = finished or set()
        table = Table(title=f"gatewatch demo: gate '{GATE}' ({status})",
                      caption=f"congested: {CONGESTED['raise_at']}+ vehicles standing still in the queue zone for "
                              f"{CONGESTED['raise_for_s']} s (queue: most in the zone at once / standing)")
        for col in ("unit", "lane", "counts", "queue", "expected wait", "alert while playing", "now"):
            table.add_column(col, overflow="fold")
        with self.lock:
            for (unit, lane), v in sorted(self.lanes.items()):
                counts = ", ".join(f"{k}: {n}" for k, n in sorted(v.counts.items())) or "0"
                wait = f"{v.expected_wait_s:.0f} s" if v.expected_wait_s is not None else "-"
                v.alert = self.alerts.get(lane)
                done = unit in finished and unit in self.signed_off
                now = "replay finished" if done else ("replaying" if v.alert is None else v.alert.level.value)
                table.add_row(unit, lane, counts, f"{v.queue} / {v.standing}", wait,
                              describe(v.while_playing(done)), now)
        return table

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def influx_total(influx: Influx1) -> int:
    """Vehicles stored, by InfluxQL, as a Grafana panel would ask."""
    try:
        series = influx.query('SELECT sum("count") FROM lane_counts')
    except QueryError:
        return 0  # no database before the server's first write
    return int(series[0]["values"][0][1]) if series else 0


@dataclass
class Stack:
    """What the demo started, all stopped (edges first, broker last) when `_stack` exits."""

    broker: Broker
    influx: Influx1
    server: Process
    edges: list[Process]
    server_password: str


@contextmanager
def _stack(run: Path, clips: list[Clip], realtime: bool, console: Console) -> Iterator[Stack]:
    with ExitStack() as started:
        passwords = {SERVER_USER: secrets.token_urlsafe(24)}
        passwords |= {unit_username(GATE, c.unit): secrets.token_urlsafe(24) for c in clips}
        mq_dir = run / "mosquitto"
        mq_dir.mkdir(parents=True, exist_ok=True)
        for user, pw in passwords.items():
            set_mosquitto_password(mq_dir / "passwd", user, pw)
        (mq_dir / "acl").write_text(server_acl(SERVER_USER) + "".join(unit_acl(GATE, c.unit) for c in clips))
        broker = start_mosquitto(
            mq_dir, anonymous=False, password_file=mq_dir / "passwd", acl_file=mq_dir / "acl",
            autosave_interval_s=None, log_types=("error", "warning", "notice", "information"), new_session=True,
        )
        started.callback(broker.stop)
        influx = start_influxd(run / "influxdb", new_session=True)
        started.callback(influx.stop)
        console.print(f"broker 127.0.0.1:{broker.port} (password + ACL), influxd {influx.url}, run folder {run}")

        server_cfg = {
            "server_id": "demo",
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "client_id": "demo-server",
                "username": SERVER_USER,
                "password_env": "GATEWATCH_MQTT_PASSWORD",
            },
            "influx": {
                "api": "v1",
                "url": influx.url,
                "database": "gatewatch",
                "create_database": True,
            },
            "spool": {"path": str(run / "server-spool.sqlite3")},
            # every lane the demo's units own, as an installer declares them: nothing else is accepted
            "validation": {"gates": {GATE: {c.unit: {lane_id(c): list(side_names(*c.line))} for c in clips}}},
            "alerts": {
                "valid_s": 30,
                "rules": {"congested": CONGESTED},
            },
            "health": {"interval_s": 5},
        }
        (run / "server.yaml").write_text(yaml.safe_dump(server_cfg))
        base_env = {k: v for k, v in os.environ.items() if k != "GATEWATCH_MQTT_PASSWORD"}
        py = [sys.executable, "-m", "gatewatch"]
        server = Process(
            [*py, "server", "--config", str(run / "server.yaml")], run / "server.log",
            env=base_env | {"GATEWATCH_MQTT_PASSWORD": passwords[SERVER_USER]}, new_session=True, name="server",
        ).start()
        started.callback(server.stop)
        edges = []
        for c in clips:
            a, b = c.line
            unit_cfg = {
                "gate": GATE,
                "unit": c.unit,
                "source": {"kind": "file", "path": str(c.path), "realtime": realtime},
                "model": {"path": str(default_model().resolve())},
                "lanes": [
                    {
                        "id": lane_id(c),
                        "line": {"a": list(a), "b": list(b)},
                        "directions": list(side_names(a, b)),
                        "queue_zone": _zone(a, b),
                    }
                ],
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": unit_username(GATE, c.unit)},
                "outbox": {"path": str(run / f"{c.unit}-outbox.sqlite3")},
                "health": {"interval_s": 5},
            }
            path = run / f"{c.unit}.yaml"
            path.write_text(yaml.safe_dump(unit_cfg))
            env = base_env | {"GATEWATCH_MQTT_PASSWORD": passwords[unit_username(GATE, c.unit)]}
            edge = Process([*py, "edge", "--config", str(path)], run / f"{c.unit}.log", env=env, new_session=True,
                           name=c.unit).start()
            started.callback(edge.stop)
            edges.append(edge)
        yield Stack(broker, influx, server, edges, passwords[SERVER_USER])


def lane_id(clip: Clip) -> str:
    """Unique within the gate (a lane belongs to one unit): the unit's id, then the lane's number."""
    return f"{clip.unit}-l1"


def _zone(a: tuple[float, float], b: tuple[float, float]) -> list[list[float]]:
    """The half of the frame vehicles come from: where they queue before the line."""
    if abs(a[1] - b[1]) < abs(a[0] - b[0]):  # a horizontal-ish line: traffic comes from above
        y = (a[1] + b[1]) / 2
        return [[0.0, max(0.0, y - 0.35)], [1.0, max(0.0, y - 0.35)], [1.0, y], [0.0, y]]
    x = (a[0] + b[0]) / 2
    return [[max(0.0, x - 0.35), 0.0], [x, 0.0], [x, 1.0], [max(0.0, x - 0.35), 1.0]]


def save_table(table: Table, path: Path) -> None:
    """The final table as an SVG picture (docs/images/demo-final.svg is one)."""
    recorder = Console(record=True, width=150, file=open(os.devnull, "w"))  # noqa: SIM115
    recorder.print(table)
    recorder.save_svg(str(path), title="gatewatch demo")
    recorder.file.close()


def run_demo(names: list[str] | None, run_dir: Path, short: bool, realtime: bool, console: Console) -> int:
    """Run the stack until every clip has played and its counts are stored; return vehicles stored."""
    default_model_path = default_model()
    if not default_model_path.exists():
        raise DemoError(f"model not found: {default_model_path} (set GATEWATCH_MODEL)")
    clips = pick_clips(names, short)
    run = run_dir.resolve()
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    with ExitStack() as stack:
        started = stack.enter_context(_stack(run, clips, realtime, console))
        view = LiveView(started.broker.port, started.server_password)
        stack.callback(view.close)
        def finished() -> set[str]:
            return {c.unit for c, p in zip(clips, started.edges, strict=True) if not p.running}

        with Live(view.table("starting"), console=console, refresh_per_second=2, transient=False) as live:
            while any(p.running for p in started.edges):
                if not started.server.running:
                    raise DemoError(f"server exited: see {run / 'server.log'}")
                running = sum(p.running for p in started.edges)
                live.update(view.table(f"{running} of {len(clips)} cameras replaying", finished()))
                time.sleep(0.5)
            failed = [c.unit for c, p in zip(clips, started.edges, strict=True) if p.returncode != 0]
            if failed:
                raise DemoError(f"edge unit(s) {failed} failed: see {run}/<unit>.log")
            published = view.total()
            stored = -1
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                stored = influx_total(started.influx)
                if stored == published:
                    break
                time.sleep(0.5)
            # the server's answer to each unit's sign-off (unit_offline) arrives just after it
            time.sleep(1.0)
            final = view.table("replay finished", finished())
            live.update(final)
        save_table(final, run / "final-table.svg")
        console.print()
        if stored != published:
            raise DemoError(f"{published} vehicles published but {stored} stored in InfluxDB (see {run})")
        console.print(
            f"[bold]{stored} vehicles[/] counted, published over MQTT and stored in InfluxDB "
            f'(InfluxQL: SELECT sum("count") FROM lane_counts -> {stored})'
        )
    console.print(
        f"data: {run / 'influxdb'} (database 'gatewatch'; start influxd -config "
        f"{run / 'influxdb' / 'influxdb.conf'} to query it), logs and configs in {run}; "
        "everything the demo started has been stopped"
    )
    return stored
