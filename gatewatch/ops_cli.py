"""Operations and developer commands: provision broker, units and servers; calibrate a unit's lanes
on a frame; the whole stack on this machine (demo) and the server ingest benchmark.

Imports of the work modules happen inside the commands, so `gatewatch --help` stays fast and a
missing optional tool (openssl, a camera) only matters to the command that needs it. Expected
failures print one `error:` line and exit with their kind's code (common.cli.guarded), as every
command does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from common.cli import guarded

console = Console(highlight=False)

StateDir = Annotated[
    Path,
    typer.Option("--dir", help="provisioning state folder (holds the CA key and passwords: keep it off git)"),
]


def _print_report(lines: list[str], changed: bool) -> None:
    for line in lines:
        console.print(escape(line), soft_wrap=True)
    console.print("changed" if changed else "nothing to change")


def provision_broker_cmd(
    host: Annotated[list[str], typer.Option("--host", help="name or address units use for the broker (repeat)")],
    state_dir: StateDir = Path("deploy-state"),
) -> None:
    """Create the CA (once), the broker's TLS certificate and the broker's password and ACL files."""

    def body() -> None:
        from gatewatch.provision import provision_broker

        report = provision_broker(state_dir, host)
        _print_report(report.lines, report.changed)

    guarded(body)


def provision_unit_cmd(
    gate: Annotated[str, typer.Option(help="gate id, e.g. huu-nghi")],
    unit: Annotated[str, typer.Option(help="unit id, unique within the gate")],
    broker_host: Annotated[str, typer.Option(help="broker name the unit connects to (in its certificate)")],
    state_dir: StateDir = Path("deploy-state"),
    broker_port: Annotated[int, typer.Option(help="broker TLS port for units")] = 8883,
    source: Annotated[str, typer.Option(help="camera: picamera, usb:N, rtsp://... or a file")] = "picamera",
    etc_dir: Annotated[Path, typer.Option(help="where the bundle is installed on the Pi")] = Path("/etc/gatewatch"),
    rotate_password: Annotated[bool, typer.Option("--rotate-password", help="replace the unit's password")] = False,
    home_assistant: Annotated[bool, typer.Option(
        "--home-assistant", help="a new unit's starter config turns Home Assistant discovery on (an existing "
        "unit.yaml decides: its homeassistant section sets the ACL)")] = False,
) -> None:
    """Create a unit's MQTT account, ACL block, client certificate and starter unit.yaml."""

    def body() -> None:
        from gatewatch.provision import UnitOptions, provision_unit

        opts = UnitOptions(
            broker_host=broker_host,
            broker_port=broker_port,
            source=source,
            etc_dir=etc_dir,
            rotate_password=rotate_password,
            home_assistant=home_assistant,
        )
        report = provision_unit(state_dir, gate, unit, opts)
        _print_report(report.lines, report.changed)

    guarded(body)


def provision_server_cmd(
    state_dir: StateDir = Path("deploy-state"),
    name: Annotated[str, typer.Option(help="server account and client id")] = "gatewatch-server",
    broker_host: Annotated[str, typer.Option(help="broker address seen from the server")] = "127.0.0.1",
    broker_port: Annotated[int, typer.Option(help="broker TLS port for the server")] = 8884,
    etc_dir: Annotated[Path, typer.Option(help="where the bundle is installed on the server")] = Path("/etc/gatewatch"),
    rotate_password: Annotated[bool, typer.Option("--rotate-password", help="replace the server's password")] = False,
) -> None:
    """Create the server's MQTT account and ACL block, and a starter server.yaml MQTT section."""

    def body() -> None:
        from gatewatch.provision import ServerOptions, provision_server

        opts = ServerOptions(
            broker_host=broker_host, broker_port=broker_port, etc_dir=etc_dir, rotate_password=rotate_password
        )
        report = provision_server(state_dir, name, opts)
        _print_report(report.lines, report.changed)

    guarded(body)


def calibrate_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="unit config YAML")],
    out: Annotated[Path, typer.Option(help="PNG to write")],
    video: Annotated[
        str | None, typer.Argument(help="clip, rtsp://..., usb:N (default: the config's own source)")
    ] = None,
    at: Annotated[float, typer.Option(help="seconds into a file to take the frame from")] = 0.0,
    grid: Annotated[bool, typer.Option(help="draw a 0.1 grid to read normalised coordinates off")] = True,
) -> None:
    """Write one camera frame with the config's lanes, lines, bands and queue zones drawn on it."""

    def body() -> None:
        from edge.devtools.calibrate import calibrate

        path = calibrate(config, out, video=video, at_s=at, grid=grid)
        console.print(f"wrote {path}")

    guarded(body)


def demo_cmd(
    clips: Annotated[
        list[str] | None,
        typer.Argument(
            help="clips to replay, one edge unit each (default: the ground-truth clips in ../shared/footage)"
        ),
    ] = None,
    run_dir: Annotated[Path, typer.Option(help="where the demo keeps its broker, database, configs and logs")] = Path(
        "run/demo"
    ),
    short: Annotated[bool, typer.Option(help="one short clip, as fast as possible (a quick check)")] = False,
    realtime: Annotated[
        bool | None, typer.Option(help="pace clips at recorded speed (default: on, off with --short)")
    ] = None,
) -> None:
    """The whole stack on this machine: private broker and InfluxDB, the server, one edge unit per
    clip, live counts, queues and alerts; stops everything it started on exit."""

    def body() -> None:
        from gatewatch.demo import run_demo

        run_demo(clips, run_dir, short, (not short) if realtime is None else realtime, console)

    guarded(body)


def bench_server_cmd(
    units: list[int] = typer.Option([1, 10, 50], "--units", "-u", help="simulated unit counts, one row each"),
    records: int = typer.Option(4000, "--records", "-n", help="window records per row"),
    lanes: int = typer.Option(4, "--lanes", help="lanes per unit"),
    rate: float = typer.Option(0.0, "--rate", help="records/s offered (0: as fast as possible)"),
    batch_size: int = typer.Option(500, "--batch-size", help="server influx.batch_size (messages per write)"),
    hostile: list[float] = typer.Option(
        [0.0], "--hostile", help="bad messages mixed in per valid record, one row each (gatewatch.hostile)"),
) -> None:
    """Window records/s from N simulated units through mosquitto and the server into influxd."""

    def body() -> None:
        from gatewatch.bench_server import run_bench

        run_bench(units, records, lanes, rate, batch_size, hostile)

    guarded(body)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)
    app.command("bench-server")(bench_server_cmd)
    app.command("provision-broker")(provision_broker_cmd)
    app.command("provision-unit")(provision_unit_cmd)
    app.command("provision-server")(provision_server_cmd)
    app.command("calibrate")(calibrate_cmd)
