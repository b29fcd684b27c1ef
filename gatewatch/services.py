"""Throwaway mosquitto, influxd and victoria-metrics for the demo, the benchmarks and the tests.

The one place that knows how to run Debian's broker and databases privately: free loopback
ports, binary lookup, the `mosquitto.conf` and `influxdb.conf` it writes, process supervision
(start, stop, SIGKILL, restart) and an InfluxQL client to read back what was stored. Nothing
here touches a service someone started by hand, and everything it starts lives under one folder.

Production never imports this module: `edge` and `server` connect to services an operator runs
(deploy/), they never start one. Broker accounts are made by `gatewatch.provision`, the one
place that runs mosquitto_passwd, and the broker the secure tests run is the shipped
deploy/mosquitto/mosquitto.conf, rendered here by `write_shipped_mosquitto_conf`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import GatewatchError

LOOPBACK = "127.0.0.1"
#: Debian package of each binary, for the "not installed" message.
PACKAGES = {"mosquitto_passwd": "mosquitto", "mosquitto_pub": "mosquitto-clients", "influxd": "influxdb"}
#: where Debian installs service binaries that a non-root PATH may lack
SYSTEM_BIN = ("/usr/sbin", "/usr/bin")


class ServiceError(GatewatchError):
    """A throwaway service cannot be started or queried."""


class MissingBinary(ServiceError):
    """A service binary is not installed."""


class QueryError(ServiceError):
    """InfluxDB answered a query with an error (e.g. "database not found" before the first write)."""


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll `check` until it is true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def find_binary(name: str, *candidates: str) -> str:
    """The path of a service binary: on PATH, one of `candidates`, or in Debian's sbin/bin."""
    for c in (name, *candidates, *(f"{d}/{name}" for d in SYSTEM_BIN)):
        found = shutil.which(c) or (c if os.path.isfile(c) and os.access(c, os.X_OK) else None)
        if found:
            return found
    raise MissingBinary(
        f"{name} not installed: apt-get install {PACKAGES.get(name, name)} (bash scripts/setup.sh does)"
    )


class Process:
    """A child process with its output in a log file, that can be stopped, killed and restarted.

    With a `port`, `start` returns only once the process listens there (and raises with the end of
    its log if it exits first), and `stop` only once the port is closed again, so a restart can
    bind it at once. `new_session` keeps a terminal's Ctrl-C away from it: the demo stops its
    children itself, in order.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 30.0,
        new_session: bool = False,
        name: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.log = log
        self.port = port
        self.env = dict(env) if env is not None else None
        self.ready_timeout_s = ready_timeout_s
        self.new_session = new_session
        self.name = name or Path(self.argv[0]).name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        if self.running:
            raise ServiceError(f"{self.name} is already running")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.cwd, start_new_session=self.new_session)
        if self.port is not None:
            port = self.port
            try:
                wait_for(lambda: port_open(port) or not self.running, self.ready_timeout_s,
                         f"{self.name} on port {port}")
            except TimeoutError:
                self.stop()
                raise ServiceError(f"{self.name} did not listen on port {port} within {self.ready_timeout_s:.0f}s; "
                                   f"see {self.log}") from None
            if not self.running:
                raise ServiceError(f"{self.name} exited with {self.returncode}:\n{self.log_tail()}")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int | None:
        """Signal the process and wait; SIGKILL it if it outlives `timeout_s`. Returns its exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.port is not None:
            port = self.port
            wait_for(lambda: not port_open(port), 10, f"port {port} to close")
        return self.returncode

    def kill(self) -> int | None:
        """SIGKILL: a crash, as far as the process and its clients can tell."""
        return self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


# -- mosquitto --------------------------------------------------------------------------------


@dataclass
class Broker:
    """A private mosquitto on loopback; `dir` holds its config, persistence and log."""

    process: Process
    port: int
    dir: Path
    host: str = LOOPBACK

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()


def _run_as_root_line() -> str:
    # started as root, mosquitto drops to the `mosquitto` user, who cannot use private temp dirs
    return "user root\n" if os.geteuid() == 0 else ""


def write_mosquitto_conf(
    folder: Path,
    port: int,
    *,
    anonymous: bool = True,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    max_queued_messages: int = 100_000,
    autosave_interval_s: int | None = 1,
    log_types: Sequence[str] = ("error", "warning", "notice"),
    extra: str = "",
) -> Path:
    """`folder/mosquitto.conf`: one loopback listener, persistence in `folder/persist`, log to stdout.

    `autosave_interval_s` 1 makes a test's restart see what was queued a second ago; None keeps
    mosquitto's default (a benchmark should not pay for a save every second).
    """
    persist = folder / "persist"
    persist.mkdir(parents=True, exist_ok=True)
    lines = [
        f"listener {port} {LOOPBACK}",
        f"allow_anonymous {'true' if anonymous else 'false'}",
        *([f"password_file {password_file}"] if password_file else []),
        *([f"acl_file {acl_file}"] if acl_file else []),
        "persistence true",
        f"persistence_location {persist}/",
        *([f"autosave_interval {autosave_interval_s}"] if autosave_interval_s is not None else []),
        f"max_queued_messages {max_queued_messages}",
        "log_dest stdout",
        *(f"log_type {t}" for t in log_types),
    ]
    conf = folder / "mosquitto.conf"
    conf.write_text(_run_as_root_line() + "\n".join(lines) + "\n" + extra)
    return conf


#: where the shipped deploy/mosquitto/mosquitto.conf expects the provisioned broker files
SHIPPED_ETC = "/etc/mosquitto/gatewatch"


def write_shipped_mosquitto_conf(folder: Path, template: str, etc: Path, ports: dict[int, int], log: Path) -> Path:
    """`folder/mosquitto.conf`: the shipped config with private paths and ports (`ports` maps each
    shipped port to a free one, persistence goes to `folder/persist`, the broker's files are read
    from `etc`); every auth, ACL and TLS line kept verbatim.

    Only what must differ on a test machine changes (file locations, ports, the log file, loopback
    binding), and a template of an unexpected shape is refused, so a secure-broker test can never
    quietly run another security setup than the one shipped. The log stays a file, as shipped:
    mosquitto flushes each line there, so a test can read why it refused a connection at once.
    """
    persist = folder / "persist"
    persist.mkdir(parents=True, exist_ok=True)
    out = []
    seen_ports = set()
    for line in template.splitlines():
        s = line.strip()
        if s.startswith("listener "):
            shipped = int(s.split()[1])
            seen_ports.add(shipped)
            out.append(f"listener {ports[shipped]} {LOOPBACK}")  # never beyond loopback here
        elif s.startswith("log_dest file "):
            out.append(f"log_dest file {log}")
        elif s.startswith("persistence_location "):
            out.append(f"persistence_location {persist}/")
        else:
            out.append(line.replace(SHIPPED_ETC, str(etc)))
    if seen_ports != set(ports):
        raise ServiceError(f"shipped config listens on {sorted(seen_ports)}, expected {sorted(ports)}")
    conf = folder / "mosquitto.conf"
    conf.write_text("\n".join(out) + "\n" + _run_as_root_line())
    return conf


def start_mosquitto(
    folder: Path, *, conf: Path | None = None, port: int | None = None, new_session: bool = False,
    **conf_options: Any,
) -> Broker:
    """mosquitto on a free loopback port with a config from `write_mosquitto_conf(**conf_options)`,
    or with a ready `conf` that listens on `port`; running when this returns."""
    exe = find_binary("mosquitto")
    folder.mkdir(parents=True, exist_ok=True)
    if conf is None:
        port = free_port()
        conf = write_mosquitto_conf(folder, port, **conf_options)
    elif port is None:
        raise ValueError("a ready conf needs the port it listens on")
    process = Process([exe, "-c", str(conf)], folder / "mosquitto.log", port=port, new_session=new_session)
    return Broker(process.start(), port, folder)


# -- influxd 1.x and victoria-metrics ---------------------------------------------------------


def influxql(url: str, q: str, db: str = "gatewatch") -> list[dict[str, Any]]:
    """Run InfluxQL as Grafana would (POST /query, ns epochs); the series of the first statement."""
    data = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ns"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=10) as resp:
        body = json.load(resp)
    result = body["results"][0]
    if "error" in result:
        raise QueryError(result["error"])
    return list(result.get("series", []))


@dataclass
class Database:
    """A database server on loopback that can be stopped and started again (outage tests)."""

    process: Process
    url: str
    dir: Path

    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        self.process.start()


@dataclass
class Influx1(Database):
    """influxd 1.x: `url` serves /write and /query."""

    def query(self, q: str, db: str = "gatewatch") -> list[dict[str, Any]]:
        return influxql(self.url, q, db)

    def rows(self, q: str, db: str = "gatewatch") -> list[dict[str, Any]]:
        """Every row of every series as a dict (tags from GROUP BY included)."""
        out = []
        for series in self.query(q, db):
            tags = series.get("tags", {})
            for values in series["values"]:
                out.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return out


def write_influxd_conf(folder: Path, http_port: int) -> Path:
    """`folder/influxdb.conf`: HTTP on `http_port` and RPC on another free port, both loopback; data
    under `folder`; no reporting, monitoring, retention or continuous-query services, little logging."""
    conf = folder / "influxdb.conf"
    conf.write_text(
        f"""reporting-disabled = true
bind-address = "{LOOPBACK}:{free_port()}"
[meta]
  dir = "{folder}/meta"
  logging-enabled = false
[data]
  dir = "{folder}/data"
  wal-dir = "{folder}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
[coordinator]
  log-queries-after = "0s"
[retention]
  enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  enabled = true
  bind-address = "{LOOPBACK}:{http_port}"
  auth-enabled = false
  log-enabled = false
  max-body-size = 0
[logging]
  level = "warn"
"""
    )
    return conf


def influxd_http_port(conf: Path) -> int:
    """The HTTP port of a config `write_influxd_conf` wrote (to start its database again later)."""
    found = re.search(r'\[http\][^\[]*bind-address = "[^"]*:(\d+)"', conf.read_text())
    if not found:
        raise ServiceError(f"{conf}: no [http] bind-address")
    return int(found.group(1))


def start_influxd(folder: Path, *, conf: Path | None = None, new_session: bool = False) -> Influx1:
    """influxd 1.x with a fresh `write_influxd_conf`, or again on an existing `conf` and its data."""
    exe = find_binary("influxd")
    folder.mkdir(parents=True, exist_ok=True)
    if conf is None:
        conf = write_influxd_conf(folder, free_port())
    port = influxd_http_port(conf)
    process = Process([exe, "-config", str(conf)], folder / "influxd.log", port=port, new_session=new_session)
    return Influx1(process.start(), f"http://{LOOPBACK}:{port}", folder)


@dataclass
class Victoria(Database):
    """victoria-metrics: accepts InfluxDB line protocol on /api/v2/write (the influxdb-client path)."""

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples (no query-time lookback or rollups), after flushing the in-memory buffers."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass
        q = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{q}", timeout=10) as resp:
            return [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]


def start_victoria(folder: Path) -> Victoria:
    exe = find_binary("victoria-metrics")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # dedup at 1 ms makes a re-written sample replace the old one, as InfluxDB's point overwrite does
    argv = [exe, f"-httpListenAddr={LOOPBACK}:{port}", f"-storageDataPath={folder / 'data'}",
            "-dedup.minScrapeInterval=1ms", "-retentionPeriod=100y", "-loggerLevel=WARN"]
    process = Process(argv, folder / "victoria.log", port=port)
    return Victoria(process.start(), f"http://{LOOPBACK}:{port}", folder)
