"""Server commands: `gatewatch server` and `gatewatch bench-server`.

Imports of the server's machinery happen inside the commands, so `gatewatch --help` and the
edge commands do not pay for paho, influxdb-client and SQLite set-up.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import typer

log = logging.getLogger("server")


#: exit status of a server that refuses to run beside another one (same spool or same client id): the
#: systemd unit does not restart it (RestartPreventExitStatus=3), so two servers cannot take turns
ANOTHER_SERVER_EXIT = 3


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"gatewatch server: {message}", err=True)
    return typer.Exit(code)


def server(
    config: Path = typer.Option(..., "--config", "-c", help="server.yaml"),
    validate_config: bool = typer.Option(False, "--validate-config", help="check the config, print errors, exit"),
) -> None:
    """Subscribe to every unit, validate, store in InfluxDB, and raise congestion alerts."""
    from server import ServerError
    from server.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        for line in exc.errors:
            typer.echo(f"{config}: {line}", err=True)
        raise typer.Exit(2) from None
    if validate_config:
        typer.echo(f"{config}: ok")
        return
    logging.basicConfig(level=cfg.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    from server.app import build
    from server.spool import SpoolLocked
    from server.subscriber import ClientIdInUse

    try:
        app = build(cfg)
    except SpoolLocked as exc:
        raise _fail(str(exc), ANOTHER_SERVER_EXIT) from None
    except ServerError as exc:
        raise _fail(str(exc)) from None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        app.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        app.run()
    except ClientIdInUse as exc:
        raise _fail(str(exc), ANOTHER_SERVER_EXIT) from None
    except ServerError as exc:
        raise _fail(str(exc), 1) from None


def bench_server(
    units: list[int] = typer.Option([1, 10, 50], "--units", "-u", help="simulated unit counts, one row each"),
    records: int = typer.Option(4000, "--records", "-n", help="window records per row"),
    lanes: int = typer.Option(4, "--lanes", help="lanes per unit"),
    rate: float = typer.Option(0.0, "--rate", help="records/s offered (0: as fast as possible)"),
    batch_size: int = typer.Option(500, "--batch-size", help="server influx.batch_size (messages per write)"),
    hostile: list[float] = typer.Option(
        [0.0], "--hostile", help="bad messages mixed in per valid record, one row each (gatewatch.hostile)"),
) -> None:
    """Window records/s from N simulated units through mosquitto and the server into influxd."""
    from server import ServerError
    from server.bench import run_bench

    try:
        run_bench(units, records, lanes, rate, batch_size, hostile)
    except ServerError as exc:
        raise _fail(str(exc), 1) from None


def register(app: typer.Typer) -> None:
    """Add the server's commands to the top-level `gatewatch` app."""
    app.command("server")(server)
    app.command("bench-server")(bench_server)
