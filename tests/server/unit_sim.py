"""A stand-in edge unit that keeps the end-to-end acknowledgement protocol, for the server's fault tests.

It is the unit's half of the protocol in its plainest form, so a server test can count what was
sent against what was stored without the camera pipeline: every message gets the next seq and
stays in an in-memory outbox; a broker PUBACK only marks it acked; a retained `stored` statement
deletes what it covers; a row PUBACKed but not stored within `resend_after_s` is sent again (the
broker may have lost it). Health says the oldest seq still held (`outbox_first_seq`). The real
unit keeps its outbox in SQLite (edge/service/outbox.py); this one lives as long as the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from wire.payloads import (
    CameraState,
    CountsMessage,
    HealthMessage,
    StatusMessage,
    StoredMessage,
    UnitState,
    WindowRecord,
    encode,
)
from wire.topics import Topic, TopicKind


@dataclass
class _Row:
    topic: str
    payload: bytes
    acked_at: float | None = None
    sent_at: float = 0.0


class AckingUnit:
    def __init__(self, port: int, gate: str, unit: str, *, resend_after_s: float = 2.0, first_seq: int = 1) -> None:
        self.gate, self.unit = gate, unit
        self.resend_after_s = resend_after_s
        self.next_seq = first_seq
        self.outbox: dict[int, _Row] = {}
        self.stored: list[StoredMessage] = []
        self.sent_total = 0
        self.resent = 0
        self._lock = threading.Lock()
        self._mids: dict[int, int] = {}
        self._early: set[int] = set()
        self._paused = False
        self._stop = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"sim-{gate}-{unit}",
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(cast(int, 0.2), 1)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        self._resender = threading.Thread(target=self._resend_loop, daemon=True)
        self._resender.start()

    # -- what a unit does ------------------------------------------------------------------------

    def send_records(self, records: Iterable[WindowRecord]) -> list[CountsMessage]:
        out = []
        for r in records:
            with self._lock:
                m = CountsMessage.from_record(r, self.next_seq)
                seq = self._enqueue(str(Topic.unit(self.gate, self.unit, TopicKind.COUNTS)), encode(m))
            self._publish(seq)
            out.append(m)
        return out

    def send_health(self) -> HealthMessage:
        with self._lock:
            seq = self.next_seq
            first = min(self.outbox, default=seq)
            h = HealthMessage(gate=self.gate, unit=self.unit, seq=seq, at=datetime.now(UTC), interval_s=1.0, fps=5,
                              inference_ms=50, camera=CameraState.UP, outbox_depth=len(self.outbox), mem_mb=50,
                              uptime_s=1.0, outbox_first_seq=first)
            self._enqueue(str(Topic.unit(self.gate, self.unit, TopicKind.HEALTH)), encode(h))
        self._publish(seq)
        return h

    def pause(self) -> None:
        """Stop sending (the link is down): rows pile up in the outbox unsent."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        """Send every row never sent, oldest first."""
        with self._lock:
            self._paused = False
            unsent = sorted(s for s, r in self.outbox.items() if not r.sent_at)
        for seq in unsent:
            self._publish(seq)

    def lose(self, n: int) -> list[int]:
        """The oldest `n` unsent rows vanish (a disk bound dropping the oldest while the link is down):
        the server must count them as a gap once health says they are gone."""
        with self._lock:
            gone = sorted(s for s, r in self.outbox.items() if not r.sent_at)[:n]
            for s in gone:
                del self.outbox[s]
        return gone

    def hold(self) -> list[int]:
        """Rows not yet covered by a `stored` statement."""
        with self._lock:
            return sorted(self.outbox)

    def last_seq(self) -> int:
        return self.next_seq - 1

    def close(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()

    # -- plumbing --------------------------------------------------------------------------------

    def _enqueue(self, topic: str, payload: bytes) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.outbox[seq] = _Row(topic, payload)
        self.sent_total += 1
        return seq

    def _publish(self, seq: int) -> None:
        """Never called with our lock held: paho calls `_on_publish` holding its own lock."""
        with self._lock:
            row = self.outbox.get(seq)
            if row is None or self._paused:
                return
            row.sent_at, row.acked_at = time.monotonic(), None
        info = self.client.publish(row.topic, row.payload, qos=1)  # paho sends it once connected
        with self._lock:
            if info.mid in self._early:  # the PUBACK beat us here
                self._early.discard(info.mid)
                row.acked_at = time.monotonic()
            else:
                self._mids[info.mid] = seq

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            return
        client.subscribe(str(Topic.stored(self.gate, self.unit)), qos=1)
        with self._lock:
            status = StatusMessage(gate=self.gate, unit=self.unit, seq=self.next_seq - 1, state=UnitState.ONLINE,
                                   at=datetime.now(UTC), version="sim", config_hash="sim")
        client.publish(str(Topic.unit(self.gate, self.unit, TopicKind.STATUS)), encode(status), qos=1, retain=True)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            seq = self._mids.pop(mid, None)
            if seq is None:
                self._early.add(mid)
                return
            row = self.outbox.get(seq)
            if row is not None:
                row.acked_at = time.monotonic()  # the broker has it: proves nothing if it crashes

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        m = StoredMessage.model_validate_json(msg.payload)
        with self._lock:
            self.stored.append(m)
            if m.through_seq > self.next_seq - 1:
                return  # about a previous life of this unit: its seqs were never ours
            for s in [s for s in self.outbox if s <= m.through_seq]:
                del self.outbox[s]

    def _resend_loop(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            with self._lock:
                due = [] if self._paused else [s for s, r in self.outbox.items()
                                               if r.acked_at is not None and now - r.acked_at >= self.resend_after_s]
                self.resent += len(due)
            for s in due:
                self._publish(s)
