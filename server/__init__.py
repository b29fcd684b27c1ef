"""gatewatch server: validated MQTT ingest into InfluxDB, and congestion alerts."""


class ServerError(Exception):
    """Base of every error the server raises on purpose; the CLI prints these as one line."""
