#!/usr/bin/env python3
"""Apply an InfluxQL file (gatewatch.iql) to an InfluxDB 1.x server over its HTTP /query API.

Standard library only, so it runs with the database host's own python3: the `influx` shell is
not always installed (Debian ships it in a separate package) and the gatewatch venv may live on
another machine. Credentials come from INFLUX_USERNAME / INFLUX_PASSWORD, never the command line.

Re-running is safe: "already exists" answers to CREATE RETENTION POLICY are expected (the ALTER
after it sets the durations) and so are "not found" answers to DROP CONTINUOUS QUERY.

    python3 apply_iql.py gatewatch.iql [--url http://127.0.0.1:8086]
    python3 apply_iql.py gatewatch.iql --backfill-from 2026-11-01T00:00:00Z [--backfill-to ...]

--backfill-from runs each continuous query's SELECT ... INTO over a past range once, for data
that arrived later than the queries' RESAMPLE FOR window (a unit offline for a day).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

#: errors that mean "already as wanted" for idempotent re-runs
TOLERATED = (
    (re.compile(r"^CREATE RETENTION POLICY", re.I), "retention policy already exists"),
    (re.compile(r"^DROP CONTINUOUS QUERY", re.I), "continuous query not found"),
)
CQ_SELECT = re.compile(r"^CREATE CONTINUOUS QUERY .*?\bBEGIN\s+(SELECT .*?)\s+END$", re.I | re.S)
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


class ApplyError(Exception):
    """A statement failed; the message names it."""


def statements(text: str) -> list[str]:
    """`;`-terminated statements, `--` comment lines dropped, whitespace normalised."""
    body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [" ".join(s.split()) for s in body.split(";") if s.strip()]


def backfill_statements(stmts: list[str], start: str, end: str | None) -> list[str]:
    """Each continuous query's SELECT ... INTO with a time range added before its GROUP BY."""
    where = f"WHERE time >= '{start}'" + (f" AND time < '{end}'" if end else "")
    out = []
    for s in stmts:
        m = CQ_SELECT.match(s)
        if m:
            select = m.group(1)
            head, sep, tail = select.rpartition(" GROUP BY ")
            if not sep:
                raise ApplyError(f"continuous query without GROUP BY: {s[:80]}")
            out.append(f"{head} {where} GROUP BY {tail}")
    return out


def query(url: str, q: str, auth: tuple[str, str] | None, timeout: float = 60.0) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{url.rstrip('/')}/query", data=urllib.parse.urlencode({"q": q}).encode(), method="POST"
    )
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body: dict[str, Any] = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc).get("error", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ApplyError(f"HTTP {exc.code} from {url}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApplyError(f"cannot reach InfluxDB at {url}: {getattr(exc, 'reason', exc)}") from None
    return body


def apply(url: str, stmts: list[str], auth: tuple[str, str] | None, out: Any = sys.stdout) -> None:
    for s in stmts:
        result = query(url, s, auth)["results"][0]
        error = result.get("error")
        short = s if len(s) <= 100 else s[:97] + "..."
        if error and not any(p.match(s) and text in error for p, text in TOLERATED):
            raise ApplyError(f"{short}: {error}")
        print(f"ok  {short}" + (f"  ({error})" if error else ""), file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Apply an InfluxQL file to InfluxDB 1.x.")
    ap.add_argument("file", type=Path)
    ap.add_argument("--url", default=os.environ.get("INFLUX_URL", "http://127.0.0.1:8086"))
    ap.add_argument("--backfill-from", help="run the continuous queries once from this UTC time (RFC 3339, Z)")
    ap.add_argument("--backfill-to", help="... up to this UTC time (default: now)")
    args = ap.parse_args(argv)
    user, password = os.environ.get("INFLUX_USERNAME"), os.environ.get("INFLUX_PASSWORD")
    auth = (user, password or "") if user else None
    try:
        stmts = statements(args.file.read_text())
        if args.backfill_from:
            for t in (args.backfill_from, args.backfill_to):
                if t is not None and not TIME.match(t):
                    raise ApplyError(f"time {t!r}: use RFC 3339 UTC, e.g. 2026-11-01T00:00:00Z")
            stmts = backfill_statements(stmts, args.backfill_from, args.backfill_to)
        apply(args.url, stmts, auth)
    except ApplyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
