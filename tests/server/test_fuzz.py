"""10,000 bad payloads through the real broker: the server stays up, dead-letters each one with its
reason, and the valid records interleaved with them are all stored."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from server.app import running
from tests.fixtures.procs import wait_for
from tests.server.fuzz import bad_messages
from tests.server.helpers import (
    DECLARED,
    LANES,
    Listener,
    Publisher,
    counts_message,
    expected_counts,
    influx_counts,
    server_config,
)
from wire.payloads import encode, topic_for
from wire.topics import DEAD_LETTER

N_BAD = 10_000


def _as_dead_lettered(payload: bytes) -> str:
    return payload[:2048].decode("utf-8", "backslashreplace")[:2048]


def test_ten_thousand_bad_payloads_are_dead_lettered_and_valid_traffic_survives(
    tmp_path: Path, mosquitto, influxd, caplog: pytest.LogCaptureFixture
) -> None:
    bad = list(bad_messages(N_BAD))
    valid = [counts_message(u, lane, i) for i in range(75) for u in ("u1", "u2") for lane in LANES[u]]
    traffic: list[tuple[str, bytes, str | None]] = [(t, p, r) for t, p, r in bad]
    traffic += [(topic_for(m), encode(m), None) for m in valid]
    random.Random(7).shuffle(traffic)
    want_letters = Counter((t, r, _as_dead_lettered(p)) for t, p, r in bad)
    assert len(set(r for _, _, r in bad)) >= 12  # every family of bad input is represented

    cfg = server_config(tmp_path, mosquitto.port, influxd.url, log_level="ERROR", validation={"gates": DECLARED})
    letters = Listener(mosquitto.port, DEAD_LETTER, "dead-letter-watch")
    with running(cfg) as server:
        assert server.subscriber.subscribed.wait(10)
        pub = Publisher(mosquitto.port)
        for topic, payload, _ in traffic:
            pub.send(topic, payload)
        pub.close()
        wait_for(lambda: len(letters.snapshot()) >= N_BAD and server.health.stored >= len(valid), 90,
                   "every dead letter and every valid record")
        assert server.subscriber.connected.is_set()
        health = server.health.snapshot(server.clock(), spool_depth=0, db_up=True, mqtt_connected=True,
                                        db_rejected_points=0)
    letters.close()

    got = letters.dead_letters()
    assert len(got) == N_BAD
    assert all(d.reason and d.detail for d in got)
    assert Counter((d.topic, d.reason, d.payload) for d in got) == want_letters
    assert health.rejected == N_BAD
    assert health.rejected_by_reason == dict(Counter(r for _, _, r in bad))
    assert influx_counts(influxd) == expected_counts(valid)
    # one line per rejection, never a traceback: bad input is expected, not an error in the server
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
