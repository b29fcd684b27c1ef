"""Where points go: one `Sink` seam, with the InfluxDB v1 and v2 write APIs behind it.

A sink writes a batch of line-protocol lines (made by influxdb-client's `Point`, see `schema`)
synchronously and says how it failed: `SinkUnavailable` means "try again later" (the caller
spools), `SinkRejected` means "these lines will never be accepted" (retrying cannot help, so the
caller isolates and drops them). The split matters because a spool that retries a poison line
forever would stop every record behind it.

Batching is done by the caller, not by influxdb-client's background batcher: a message may be
acknowledged to the broker only once its batch is durable, and the background batcher reports
results through callbacks that no longer know which messages a batch held.
"""

from __future__ import annotations

import base64
import logging
import urllib.parse
from collections.abc import Sequence
from typing import Protocol

import urllib3

from common.config import secret_from_env
from server import ServerError
from server.config import InfluxApi, InfluxConfig

log = logging.getLogger(__name__)


class SinkError(ServerError):
    pass


class SinkUnavailable(SinkError):
    """The database cannot take writes now (down, overloaded, misconfigured auth): retry later."""


class SinkRejected(SinkError):
    """The database refuses these lines for good (bad line protocol, field type conflict)."""


class Sink(Protocol):
    def write(self, lines: Sequence[str]) -> None:
        """Store `lines` durably or raise SinkUnavailable / SinkRejected."""
        ...

    def close(self) -> None: ...

    @property
    def target(self) -> str:
        """Where the sink writes, for log lines (no credentials)."""
        ...


def _retryable(status: int) -> bool:
    # 400: bad lines or a field type conflict; 413: too large (the caller bisects the batch);
    # 422: unprocessable (v2); anything else, auth included, may well work after someone fixes it.
    return status not in (400, 413, 422)


class InfluxV1Sink:
    """The 1.x `/write` API (InfluxDB 1.6/1.7 as Debian ships it; also 1.8+)."""

    def __init__(self, config: InfluxConfig, http: urllib3.PoolManager | None = None) -> None:
        self.config = config
        self._http = http or urllib3.PoolManager(
            num_pools=2, maxsize=2, retries=False,
            timeout=urllib3.Timeout(connect=min(3.0, config.timeout_s), read=config.timeout_s),
        )
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        password = secret_from_env(config.password_env, "influx.password_env")
        if config.username is not None:
            cred = base64.b64encode(f"{config.username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {cred}"
        params = {"db": config.database, "precision": "ns"}
        if config.retention_policy:
            params["rp"] = config.retention_policy
        self._write_url = f"{config.url.rstrip('/')}/write?{urllib.parse.urlencode(params)}"
        self._database_ready = not config.create_database

    @property
    def target(self) -> str:
        return f"{self.config.url} db={self.config.database} (v1 /write)"

    def _request(self, url: str, body: bytes) -> tuple[int, str]:
        try:
            resp = self._http.request("POST", url, body=body, headers=self._headers)
        except urllib3.exceptions.HTTPError as exc:
            raise SinkUnavailable(f"{self.target}: {type(exc).__name__}: {exc}") from None
        return resp.status, resp.data.decode(errors="replace")[:500]

    def _create_database(self) -> None:
        q = urllib.parse.urlencode({"q": f'CREATE DATABASE "{self.config.database}"'})
        status, text = self._request(f"{self.config.url.rstrip('/')}/query?{q}", b"")
        if status != 200 or '"error"' in text:
            raise SinkUnavailable(f"{self.target}: CREATE DATABASE failed: HTTP {status} {text}")
        self._database_ready = True

    def write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        if not self._database_ready:
            self._create_database()
        status, text = self._request(self._write_url, "\n".join(lines).encode())
        if status == 204:
            return
        if status == 404 and "database not found" in text and self.config.create_database:
            self._database_ready = False  # dropped under us: recreate on the next try
        if _retryable(status):
            raise SinkUnavailable(f"{self.target}: HTTP {status} {text}")
        raise SinkRejected(f"HTTP {status} {text}")

    def close(self) -> None:
        self._http.clear()


class InfluxV2Sink:
    """The v2 write API through influxdb-client: InfluxDB 2.x/3.x, 1.8+ compat, VictoriaMetrics."""

    def __init__(self, config: InfluxConfig) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.config = config
        token = secret_from_env(config.token_env, "influx.token_env")
        self._client = InfluxDBClient(
            url=config.url, token=token or "", org=config.org, timeout=int(config.timeout_s * 1000), retries=False,
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    @property
    def target(self) -> str:
        return f"{self.config.url} bucket={self.config.bucket} (v2 write API)"

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.rest import ApiException

        if not lines:
            return
        try:
            self._write.write(
                bucket=self.config.bucket, org=self.config.org, record=list(lines),  # default precision: ns
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            text = (exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body))[:500]
            if _retryable(status):
                raise SinkUnavailable(f"{self.target}: HTTP {status} {text}") from None
            raise SinkRejected(f"HTTP {status} {text}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(f"{self.target}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def make_sink(config: InfluxConfig) -> Sink:
    """The one place that picks an implementation; everything else sees only `Sink`."""
    if config.api == InfluxApi.V2:
        return InfluxV2Sink(config)
    return InfluxV1Sink(config)
