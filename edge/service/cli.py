"""`gatewatch edge --config unit.yaml`: the unit's long-running service.

Wiring only: which real implementations (ultralytics pipeline, RPi pins, SQLite file, paho)
go into `EdgeRuntime`. Heavy imports (ultralytics, torch) happen inside the command, so
`--validate-config` and `--help` stay fast on a Pi. The command runs inside
`common.cli.guarded(catch_all=True)`: every failure, even a bug, is one `error:` line in journald
with its kind's exit code (2 bad config, 1 anything else); a bug's traceback is logged only with
``--log-level debug``.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import typer

from common.cli import guarded
from edge import EdgeError
from edge.config import UnitConfig, load_config

log = logging.getLogger("edge.service.runtime")

PipelineFactory = Callable[[UnitConfig, Callable[[Any], None] | None], Any]


def check_runtime_config(cfg: UnitConfig, *, need_model: bool = True) -> None:
    """What `--validate-config` adds beyond the schema: files that must exist on this unit."""
    if need_model and not cfg.model.path.exists():
        raise EdgeError(f"model not found: {cfg.model.path} (see models/README; set model.path or GATEWATCH_MODEL)")
    if cfg.source.kind == "file" and cfg.source.path and not Path(cfg.source.path).exists():
        raise EdgeError(f"source file not found: {cfg.source.path}")
    for tls in (cfg.mqtt.tls_ca_file, cfg.mqtt.tls_cert_file, cfg.mqtt.tls_key_file):
        if tls is not None and not tls.exists():
            raise EdgeError(f"mqtt TLS file not found: {tls}")
    if cfg.mqtt.username and not cfg.mqtt.password(required=False):
        log.warning("mqtt.username is set but no password: environment variable %s is not set (mqtt.password_env)",
                    cfg.mqtt.password_env)


def check_broker(cfg: UnitConfig, timeout_s: float = 10.0) -> None:
    """One synchronous connect, for `--check-broker` at install time; the service itself never
    exits over an unreachable broker (it buffers)."""
    import threading

    from common.mqtt import client_for

    result: dict[str, str] = {}
    done = threading.Event()
    client = client_for(cfg.mqtt, f"{cfg.gate}-{cfg.unit}-check", password=cfg.mqtt.password(required=False))

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        result["rc"] = "ok" if not rc.is_failure else str(rc)
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=cfg.mqtt.keepalive_s)
    except (OSError, ValueError) as exc:
        raise EdgeError(f"mqtt broker {cfg.mqtt.host}:{cfg.mqtt.port} unreachable: {exc}") from None
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise EdgeError(f"mqtt broker {cfg.mqtt.host}:{cfg.mqtt.port}: no CONNACK within {timeout_s:.0f}s")
        if result["rc"] != "ok":
            raise EdgeError(f"mqtt broker {cfg.mqtt.host}:{cfg.mqtt.port} refused the connection: {result['rc']}")
    finally:
        client.disconnect()
        client.loop_stop()


def default_pipeline_factory(cfg: UnitConfig, on_event: Callable[[Any], None] | None) -> Any:
    from edge.pipeline import build_pipeline  # loads the model runtime (torch only on the ultralytics path)

    return build_pipeline(cfg, on_event=on_event)


def serve(
    cfg: UnitConfig,
    *,
    pipeline_factory: PipelineFactory = default_pipeline_factory,
    pin_factory: Any = None,
    install_signals: bool = True,
) -> None:
    """Build the real runtime around `cfg` and run it until the source ends or SIGTERM/SIGINT."""
    from edge.service.outbox import Outbox
    from edge.service.runtime import EdgeRuntime, SdNotifier

    outbox = Outbox.from_config(cfg.outbox)
    signals = loops = None
    if cfg.gpio.status_led is not None or cfg.gpio.lane_signals or cfg.gpio.loop_sensors:
        import time

        from edge.service.loop_sensor import LoopSensors
        from edge.service.signals import SignalBoard

        try:
            signals = SignalBoard(cfg.gpio, pin_factory=pin_factory, clock=time.time)
            loops = LoopSensors(cfg.gpio.loop_sensors, clock=time.time, pin_factory=pin_factory)
        except Exception as exc:  # gpiozero raises many types (BadPinFactory, PinInUse, ...)
            outbox.close()
            raise EdgeError(f"GPIO set-up failed: {type(exc).__name__}: {exc}") from None
    runtime = EdgeRuntime(cfg, outbox, signals=signals, loops=loops, notifier=SdNotifier())
    previous: dict[signal.Signals, Any] = {}
    if install_signals:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s; flushing and going offline", signal.Signals(signum).name)
            runtime.request_stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        pipeline = pipeline_factory(cfg, runtime.on_event if cfg.counting.events else None)
    except BaseException:
        runtime.shutdown()
        raise
    try:
        runtime.run(pipeline)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def edge_command(
    config: Path,
    validate_config: bool = False,
    check_broker_flag: bool = False,
    log_level: str = "info",
    pipeline_factory: PipelineFactory = default_pipeline_factory,
) -> None:
    """The command's body: check the config, then serve until stopped (or only check, and say so)."""
    setup_logging(log_level)
    cfg = load_config(config)
    if validate_config or check_broker_flag:
        check_runtime_config(cfg)
        if check_broker_flag:
            check_broker(cfg)
        typer.echo(f"{config}: ok (gate {cfg.gate}, unit {cfg.unit}, config {cfg.config_hash()})")
        return
    check_runtime_config(cfg, need_model=pipeline_factory is default_pipeline_factory)
    serve(cfg, pipeline_factory=pipeline_factory)


def register_runtime(app: typer.Typer) -> None:
    """Add `edge` to the `gatewatch` command (called by edge/cli.py)."""

    @app.command("edge")
    def edge(
        config: Path = typer.Option(..., "--config", "-c", help="unit config YAML"),
        validate_config: bool = typer.Option(
            False, "--validate-config", help="check the config and the files it names, then exit"
        ),
        check_broker_flag: bool = typer.Option(
            False, "--check-broker", help="also connect to the broker once (install-time check)"
        ),
        log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error"),
    ) -> None:
        """Run the edge unit: count vehicles, buffer to the outbox, publish over MQTT."""
        # process boundary: journald gets one line, whatever failed
        guarded(lambda: edge_command(config, validate_config, check_broker_flag, log_level), catch_all=True)
