"""gatewatch server: validated MQTT ingest into InfluxDB, and congestion alerts.

Reading order follows the data: config -> subscriber -> validation -> points -> writer (sinks,
spool) -> alerts -> health, wired together in app.
"""

from typing import ClassVar

from common.errors import GatewatchError


class ServerError(GatewatchError):
    """Base of every error the server raises on purpose; the CLI prints these as one line."""


class AnotherServer(ServerError):
    """Another gatewatch server holds this spool or this MQTT client id. Its exit status, 3, is one
    the systemd unit does not restart (RestartPreventExitStatus=3): two servers must not take turns
    at one session or one spool."""

    exit_code: ClassVar[int] = 3
