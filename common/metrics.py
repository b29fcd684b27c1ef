"""Prometheus `/metrics` for the long-running processes (edge unit and server), one style for both.

Each process builds its own `CollectorRegistry` rather than using prometheus_client's global one:
a test (or the demo) may run several units or servers in one Python process, and each must show
only its own figures. Most figures are read at scrape time from the objects that already count
them (outbox, publisher, pipeline, server health), so the hot paths gain no bookkeeping; only
per-frame and per-write timings are observed as they happen, into histograms.

Off by default, on loopback when on: a listener is a port an operator has to know about (a
firewall rule, a clash when two units or servers share a host, as the demo's units do), and the
same figures already reach InfluxDB through the health messages. Turning it on is one key, and
pointing it beyond loopback a deliberate second one. A port that cannot be bound is one error line
and the process carries on without `/metrics`: counting and storing matter more than telemetry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from common.config import MetricsConfig

log = logging.getLogger(__name__)


@dataclass
class MetricsEndpoint:
    """A running `/metrics` listener; `stop` frees its port."""

    server: WSGIServer
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(cfg: MetricsConfig, registry: CollectorRegistry, what: str) -> MetricsEndpoint | None:
    """Serve `registry` on `cfg.host:cfg.port` in a daemon thread; None (and one error line) if the
    address cannot be bound, or if metrics are off."""
    if not cfg.enabled:
        return None
    try:
        server, _thread = start_http_server(cfg.port, cfg.host, registry)
    except OSError as exc:
        log.error("%s metrics: cannot listen on %s:%d (%s); running without /metrics", what, cfg.host, cfg.port,
                  exc.strerror or exc)
        return None
    log.info("%s metrics on http://%s:%d/metrics", what, cfg.host, cfg.port)
    return MetricsEndpoint(server, cfg.host, cfg.port)
