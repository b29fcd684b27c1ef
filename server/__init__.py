"""gatewatch server: validated MQTT ingest into InfluxDB, and congestion alerts.

Reading order follows the data: config -> subscriber -> validation -> points -> writer (sinks,
spool) -> alerts -> health, wired together in app.
"""

from common.errors import GatewatchError


class ServerError(GatewatchError):
    """Base of every error the server raises on purpose; the CLI prints these as one line."""
