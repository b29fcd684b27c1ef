"""Server command: `gatewatch server` (its benchmark, `gatewatch bench-server`, is a developer tool in
gatewatch/bench_server.py).

Imports of the server's machinery happen inside the commands, so `gatewatch --help` and the
edge commands do not pay for paho, influxdb-client and SQLite set-up. Failures are one `error:`
line with their kind's exit code (common.cli.guarded): 2 for a config that cannot be used.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import typer

from common.cli import guarded

log = logging.getLogger("server")


def server(
    config: Path = typer.Option(..., "--config", "-c", help="server.yaml"),
    validate_config: bool = typer.Option(False, "--validate-config", help="check the config, print errors, exit"),
) -> None:
    """Subscribe to every unit, validate, store in InfluxDB, and raise congestion alerts."""
    guarded(lambda: _serve(config, validate_config))


def _serve(config: Path, validate_config: bool) -> None:
    from server.config import load_config

    cfg = load_config(config)
    if validate_config:
        typer.echo(f"{config}: ok")
        return
    logging.basicConfig(level=cfg.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    from server.app import build

    app = build(cfg)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        app.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app.run()


def register(app: typer.Typer) -> None:
    """Add the server's command to the top-level `gatewatch` app."""
    app.command("server")(server)
