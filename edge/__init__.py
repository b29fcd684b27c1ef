"""gatewatch edge unit: camera -> detections -> tracks -> lane events -> window records -> MQTT."""

from common.errors import GatewatchError

__version__ = "0.1.0"


class EdgeError(GatewatchError):
    """Base of every error the edge raises on purpose; the CLI prints these as one line."""
