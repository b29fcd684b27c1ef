"""gatewatch edge unit: camera -> detections -> tracks -> lane events -> window records -> MQTT."""

__version__ = "0.1.0"


class EdgeError(Exception):
    """Base of every error the edge raises on purpose; the CLI prints these as one line."""
