"""`gatewatch demo`: the whole stack on one machine, from recorded footage to InfluxDB and alerts.

It starts a private mosquitto (password + per-unit ACL, generated credentials) and a private
influxd under a run folder on free loopback ports, then `gatewatch server` and one
`gatewatch edge` per clip, all as real processes exactly as they run in production. It shows
live per-lane counts, queues and alerts from MQTT, checks with InfluxQL what reached the
database, and stops everything it started, even on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.live import Live
from rich.table import Table

from edge import EdgeError
from edge.devtools.truth import read_ground_truth
from edge.paths import default_model, footage_dir
from edge.stages.geometry import side_names
from gatewatch.provision import server_acl, unit_acl, unit_username
from wire.errors import WireError
from wire.payloads import AlertMessage, CountsMessage, decode_message

GATE = "demo"
SERVER_USER = "demo-server"
DEFAULT_CLIPS = (
    "degirum_Traffic.mp4",
    "ahmetozlu_input_video.mp4",
    "opencv4nodejs_traffic.mp4",
    "bgslibrary_dataset_video03.avi",
)


class DemoError(EdgeError):
    """The demo cannot start (a missing binary, clip or model)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str, fallback: str) -> str:
    found = shutil.which(name) or (fallback if Path(fallback).exists() else None)
    if not found:
        raise DemoError(f"{name} not found: run `bash scripts/setup.sh` (it installs mosquitto and influxdb)")
    return found


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"{what} exited: {log.read_text(errors='replace')[-500:]}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise DemoError(f"{what} did not listen on port {port} within {timeout:.0f}s")


@dataclass
class Procs:
    """Everything the demo started, stopped in reverse order whatever happens."""

    items: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.items.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for _, proc in reversed(self.items):
            self.stop(proc)


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


@dataclass
class LaneView:
    counts: dict[str, int] = field(default_factory=dict)
    queue: int = 0
    expected_wait_s: float | None = None
    alert: str = "-"


class LiveView:
    """Reads the stack's own MQTT traffic (as the server account) to show what operators would."""

    def __init__(self, port: int, password: str) -> None:
        self.lanes: dict[tuple[str, str], LaneView] = {}
        self.alerts: dict[str, str] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="demo-view")
        self.client.username_pw_set(SERVER_USER, password)
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
                view.expected_wait_s = m.queue.expected_wait_s
            elif isinstance(m, AlertMessage):
                rules = ", ".join(a.rule for a in m.active)
                self.alerts[m.lane] = f"{m.level.value}{': ' + rules if rules else ''}"

    def total(self) -> int:
        with self.lock:
            return sum(sum(v.counts.values()) for v in self.lanes.values())

    def table(self, status: str) -> Table:
        table = Table(title=f"gatewatch demo: gate '{GATE}' ({status})")
        for col in ("unit", "lane", "counts", "queue", "expected wait", "alert"):
            table.add_column(col)
        with self.lock:
            for (unit, lane), v in sorted(self.lanes.items()):
                counts = ", ".join(f"{k}: {n}" for k, n in sorted(v.counts.items())) or "0"
                wait = f"{v.expected_wait_s:.0f} s" if v.expected_wait_s is not None else "-"
                table.add_row(unit, lane, counts, str(v.queue), wait, self.alerts.get(lane, "green"))
        return table

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def influx_total(url: str) -> int:
    """Vehicles stored, by InfluxQL, as a Grafana panel would ask."""
    q = urllib.parse.urlencode({"db": "gatewatch", "q": 'SELECT sum("count") FROM lane_counts'})
    with urllib.request.urlopen(f"{url}/query?{q}", timeout=10) as resp:
        body = json.load(resp)
    series = body["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def _mosquitto_conf(run: Path, port: int) -> Path:
    (run / "mosquitto").mkdir(parents=True, exist_ok=True)
    conf = run / "mosquitto" / "mosquitto.conf"
    conf.write_text(
        ("user root\n" if os.geteuid() == 0 else "") + f"listener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {run / 'mosquitto' / 'passwd'}\nacl_file {run / 'mosquitto' / 'acl'}\n"
        f"persistence true\npersistence_location {run / 'mosquitto'}/\nlog_dest stdout\n"
    )
    return conf


def _influxd_conf(run: Path, port: int) -> Path:
    d = run / "influxdb"
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "influxdb.conf"
    conf.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{free_port()}"\n'
        f'[meta]\n  dir = "{d}/meta"\n[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n'
        f'  query-log-enabled = false\n[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        '[logging]\n  level = "warn"\n'
    )
    return conf


def _add_user(passwd: Path, user: str, password: str) -> None:
    exe = _binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    args = [exe, str(passwd), user] if passwd.exists() else [exe, "-c", str(passwd), user]
    subprocess.run(args, input=f"{password}\n{password}\n", capture_output=True, text=True, check=True)
    passwd.chmod(0o600)


@contextmanager
def _stack(run: Path, clips: list[Clip], realtime: bool, console: Console) -> Iterator[tuple[Procs, dict[str, Any]]]:
    procs = Procs()
    try:
        mq_port, db_port = free_port(), free_port()
        passwords = {SERVER_USER: secrets.token_urlsafe(24)}
        passwords |= {unit_username(GATE, c.unit): secrets.token_urlsafe(24) for c in clips}
        (run / "mosquitto").mkdir(parents=True, exist_ok=True)
        for user, pw in passwords.items():
            _add_user(run / "mosquitto" / "passwd", user, pw)
        (run / "mosquitto" / "acl").write_text(server_acl(SERVER_USER) + "".join(unit_acl(GATE, c.unit) for c in clips))
        conf = _mosquitto_conf(run, mq_port)
        broker = procs.start(
            "mosquitto", [_binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)], run / "mosquitto.log"
        )
        _wait_port(mq_port, broker, "mosquitto", run / "mosquitto.log")
        dbconf = _influxd_conf(run, db_port)
        db = procs.start(
            "influxd", [_binary("influxd", "/usr/bin/influxd"), "-config", str(dbconf)], run / "influxd.log"
        )
        _wait_port(db_port, db, "influxd", run / "influxd.log")
        console.print(
            f"broker 127.0.0.1:{mq_port} (password + ACL), influxd http://127.0.0.1:{db_port}, run folder {run}"
        )

        server_cfg = {
            "server_id": "demo",
            "mqtt": {
                "host": "127.0.0.1",
                "port": mq_port,
                "client_id": "demo-server",
                "username": SERVER_USER,
                "password_env": "GATEWATCH_MQTT_PASSWORD",
            },
            "influx": {
                "api": "v1",
                "url": f"http://127.0.0.1:{db_port}",
                "database": "gatewatch",
                "create_database": True,
            },
            "spool": {"path": str(run / "server-spool.sqlite3")},
            # every lane the demo's units own, as an installer declares them: nothing else is accepted
            "validation": {"gates": {GATE: {c.unit: {lane_id(c): list(side_names(*c.line))} for c in clips}}},
            "alerts": {
                "valid_s": 30,
                "rules": {"congested": {"raise_at": 4, "raise_for_s": 10, "clear_below": 2, "clear_for_s": 10}},
            },
            "health": {"interval_s": 5},
        }
        (run / "server.yaml").write_text(yaml.safe_dump(server_cfg))
        base_env = {k: v for k, v in os.environ.items() if k != "GATEWATCH_MQTT_PASSWORD"}
        py = [sys.executable, "-m", "gatewatch"]
        server = procs.start(
            "server",
            [*py, "server", "--config", str(run / "server.yaml")],
            run / "server.log",
            env=base_env | {"GATEWATCH_MQTT_PASSWORD": passwords[SERVER_USER]},
        )
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
                "mqtt": {"host": "127.0.0.1", "port": mq_port, "username": unit_username(GATE, c.unit)},
                "outbox": {"path": str(run / f"{c.unit}-outbox.sqlite3")},
                "health": {"interval_s": 5},
            }
            path = run / f"{c.unit}.yaml"
            path.write_text(yaml.safe_dump(unit_cfg))
            env = base_env | {"GATEWATCH_MQTT_PASSWORD": passwords[unit_username(GATE, c.unit)]}
            edges.append(procs.start(c.unit, [*py, "edge", "--config", str(path)], run / f"{c.unit}.log", env=env))
        yield (
            procs,
            {
                "server": server,
                "edges": edges,
                "mq_port": mq_port,
                "db_url": f"http://127.0.0.1:{db_port}",
                "server_password": passwords[SERVER_USER],
            },
        )
    finally:
        procs.stop_all()


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
        _, info = stack.enter_context(_stack(run, clips, realtime, console))
        view = LiveView(info["mq_port"], info["server_password"])
        stack.callback(view.close)
        with Live(view.table("starting"), console=console, refresh_per_second=2, transient=False) as live:
            while any(p.poll() is None for p in info["edges"]):
                if info["server"].poll() is not None:
                    raise DemoError(f"server exited: see {run / 'server.log'}")
                running = sum(p.poll() is None for p in info["edges"])
                live.update(view.table(f"{running} of {len(clips)} cameras replaying"))
                time.sleep(0.5)
            failed = [c.unit for c, p in zip(clips, info["edges"], strict=True) if p.returncode != 0]
            if failed:
                raise DemoError(f"edge unit(s) {failed} failed: see {run}/<unit>.log")
            published = view.total()
            stored = -1
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                stored = influx_total(info["db_url"])
                if stored == published:
                    break
                time.sleep(0.5)
            live.update(view.table("all clips replayed"))
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
