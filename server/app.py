"""Wiring: subscriber -> validation -> schema -> durable writer, with alerts and health on the side.

One processing thread owns the stream, so the alert state sees messages in arrival order and
needs no locks. It collects a batch of messages, makes the batch durable (database or spool),
and only then acknowledges the batch's messages, in the order they arrived, to the broker
(PUBACK) and to their units (the retained `stored` statement, see server.stored). Rejected
messages are dead-lettered as they come and acknowledged with their batch. A batch that neither
the database nor the spool can take stays unacknowledged and is tried again: the broker and the
units still hold its messages.

Every seam is injected (sink, spool, subscriber client, clock), so tests and the benchmark run
the same wiring against real services or fakes.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from server import schema
from server.alerts import AlertEngine, AlertEvent
from server.clashes import KeyClashes
from server.config import ServerConfig
from server.health import Health, health_fields
from server.metrics import Readers, ServerMetrics
from server.sinks import Sink, make_sink
from server.spool import Spool, SpoolError, SpoolFull
from server.stored import StoredTracker
from server.subscriber import Received, Subscriber
from server.summary import GateSummaries
from server.validation import Clock, Rejected, UnitMessage, Validator, utc_now
from server.writer import DurableWriter
from wire.errors import WireError
from wire.payloads import (
    AlertMessage,
    CountsMessage,
    DeadLetter,
    StatusMessage,
    StoredMessage,
    decode_message,
    encode,
)
from wire.summary import PROVINCE_SUMMARY, gate_summary_topic
from wire.topics import DEAD_LETTER, SERVER_HEALTH, Topic, TopicKind, is_own_output

log = logging.getLogger(__name__)

#: how often the wall-clock silence check runs
SILENCE_CHECK_S = 1.0
#: rejections are logged at most once per reason in this many seconds (the rest are counted)
REJECTION_LOG_S = 1.0
#: how often the cross-gate summary of the current interval is computed again (stored and
#: published only when it changed)
SUMMARY_CHECK_S = 5.0


@dataclass
class _Batch:
    lines: list[str] = field(default_factory=list)
    acks: list[Received] = field(default_factory=list)
    #: unit messages, stored or dead-lettered, for the units' acknowledgement (arrival order)
    handled: list[UnitMessage] = field(default_factory=list)
    messages: int = 0
    accepted: int = 0
    started: float = 0.0


class Server:
    def __init__(
        self, config: ServerConfig, *, sink: Sink, spool: Spool, subscriber: Subscriber | None = None,
        inbox: queue.SimpleQueue[Received] | None = None, clock: Clock = utc_now, lanes_file: Path | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.inbox: queue.SimpleQueue[Received] = inbox if inbox is not None else queue.SimpleQueue()
        self.subscriber = subscriber or Subscriber(config.mqtt, self.inbox,
                                                   instance=f"{socket.gethostname()}:{config.spool.path}")
        self.health = Health(config.server_id)
        self.writer = DurableWriter(
            sink, spool, replay_batch=config.spool.replay_batch, retry_min_s=config.spool.retry_min_s,
            retry_max_s=config.spool.retry_max_s, on_written=self._on_written, on_rejected=self._db_rejected,
        )
        self.metrics = ServerMetrics(Readers(
            self.health, spool_points=lambda: self.writer.spool.depth, database_up=lambda: self.writer.db_up,
            db_rejected_points=lambda: self.writer.rejected_points,
            mqtt_connected=lambda: self.subscriber.connected.is_set(),
        ))
        self.summary = GateSummaries(config.summary)
        #: topic -> payload last published by the summary (retained; re-sent only when it changes)
        self._summary_sent: dict[str, bytes] = {}
        self.validator = Validator(config.validation, clock, lanes_file)
        self.alerts = AlertEngine(config.alerts)
        self.stored = StoredTracker(min_interval_s=config.stored.min_interval_s,
                                    max_pending=config.stored.max_pending)
        self.clashes = KeyClashes()
        #: the spool refused the last batch it was offered (and the database could not take it either)
        self.spool_full = False
        self._rejection_log: dict[str, tuple[float, int]] = {}
        self._stop = threading.Event()
        self._batch = _Batch()
        self._next_health = self._next_republish = self._next_silence = self._next_summary = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets a flag."""
        self._stop.set()

    def run(self) -> None:
        """Process until `request_stop`; then flush, acknowledge and disconnect."""
        log.info("gatewatch server %s: mqtt %s subscribe %s, database %s, spool %s",
                 self.config.server_id, self.subscriber.where, self.config.mqtt.subscription,
                 self.writer.sink.target, self.writer.spool.path)
        self.metrics.start(self.config.metrics)
        self.writer.start()
        self.subscriber.start()
        now = time.monotonic()
        self._next_health = now + self.config.health.interval_s
        self._next_republish = now + self.config.alerts.valid_s / 2
        self._next_silence = now + SILENCE_CHECK_S
        try:
            while not self._stop.is_set() and self.subscriber.fatal is None:
                try:
                    self._step()
                except Exception:  # the process boundary: log, breathe, carry on with the stream
                    log.exception("unexpected error in the processing loop; continuing")
                    self._stop.wait(1.0)
        finally:
            self._shutdown()
        if self.subscriber.fatal is not None:
            raise self.subscriber.fatal

    def _step(self) -> None:
        self._pump(0.05)
        now = time.monotonic()
        if (self._batch.messages or self._batch.lines) and (
            self._batch.messages >= self.config.influx.batch_size
            or now - self._batch.started >= self.config.influx.flush_interval_s
        ):
            self._flush()
        if self.config.alerts.silence_wall_clock and now >= self._next_silence:
            self._next_silence = now + SILENCE_CHECK_S
            self._on_events(self.alerts.check_silence(self.clock()))
        if now >= self._next_republish:
            self._next_republish = now + self.config.alerts.valid_s / 2
            self._publish_alerts(all_lanes=True)
        self._publish_stored(now)
        self.subscriber.refresh_claim()
        if now >= self._next_health:
            self._next_health = now + self.config.health.interval_s
            self._health_tick()
        if self.config.summary.enabled and now >= self._next_summary:
            self._next_summary = now + SUMMARY_CHECK_S
            self._summary_tick()

    def _shutdown(self) -> None:
        try:
            while True:  # what is already here gets stored and acknowledged, not re-sent
                self._handle(self.inbox.get_nowait())
        except queue.Empty:
            pass
        self._flush()
        self._publish_stored(float("inf"))
        self.subscriber.stop()
        self.writer.stop()
        self.metrics.stop()
        log.info("gatewatch server stopped (spool depth %d)", self.writer.spool.depth)

    # -- one message, in order: own output? validation, points, alerts -------------------------

    def _pump(self, timeout: float) -> None:
        """Take what has arrived, up to one batch, waiting at most `timeout` for the first."""
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self._handle(item)
        limit = self.config.influx.batch_size
        while self._batch.messages < limit:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(item)

    def _handle(self, item: Received) -> None:
        """One message's whole way through the server, into the open batch: our own output is skipped
        (retained alert states and stored statements restore our memory); a unit message is validated
        or dead-lettered, becomes lines, and goes past the alert rules, whose raises and clears are
        lines too."""
        self._note_start()
        self._batch.messages += 1
        self._batch.acks.append(item)
        if is_own_output(item.topic):
            if item.retain:
                self._restore(item)
            return
        self.health.on_received()
        try:
            message = self.validator.check(item.topic, item.payload)
        except Rejected as exc:  # read, from a known unit: its seq counts as handled
            self._reject(item, exc.reason, exc.detail)
            self._batch.handled.append(exc.message)
            return
        except WireError as exc:
            self._reject(item, exc.reason, exc.detail)
            return
        except Exception as exc:  # a validator bug: still one message's problem, not the stream's
            log.exception("validator failed on a message from %s", item.topic)
            self._reject(item, "internal", f"{type(exc).__name__}: {exc}")
            return
        try:
            if isinstance(message, CountsMessage):
                self._batch.lines.extend(schema.counts_lines(message, self.validator.directions(message)))
                if self.clashes.clashes(message):
                    self.health.on_clash(message.gate, message.unit)
            else:
                self._batch.lines.extend(schema.lines_for(message))
            if self.validator.ahead(message):
                # stored, but a clock running ahead must not hold its lanes' alerts, the stream's time or
                # the live cross-gate view
                self.health.on_ahead(message.gate, message.unit)
            else:
                self._on_events(self.alerts.on_message(message))
                if isinstance(message, CountsMessage):
                    self.summary.on_record(message)
        except Exception as exc:  # a bug must cost one message, not the stream
            log.exception("internal error on a message from %s", item.topic)
            self._reject(item, "internal", f"{type(exc).__name__}: {exc}")
            return
        self._batch.accepted += 1
        if not (item.retain and isinstance(message, StatusMessage)):  # a retained copy is old news
            self._batch.handled.append(message)
        self.health.on_unit(message.gate, message.unit)

    def _restore(self, item: Received) -> None:
        """Our own retained output, delivered on (re)subscribe: the memory of a previous run."""
        if item.topic.endswith(f"/{TopicKind.STORED.value}"):
            self._restore_stored(item)
        elif item.topic.endswith(f"/{TopicKind.ALERT.value}"):
            self._restore_alert(item)

    def _restore_stored(self, item: Received) -> None:
        try:
            message = decode_message(item.topic, item.payload)
        except WireError as exc:
            log.warning("ignoring unreadable retained stored statement on %s: %s", item.topic, exc)
            return
        if isinstance(message, StoredMessage) and self.stored.restore(message):
            log.info("restored %s/%s: stored through seq %d (%d gaps, %d resets so far)", message.gate,
                     message.unit, message.through_seq, message.gaps, message.resets)

    def _restore_alert(self, item: Received) -> None:
        """Our own retained alert state, delivered on (re)subscribe: the memory of a previous run."""
        try:
            message = decode_message(item.topic, item.payload)
        except WireError as exc:
            log.warning("ignoring unreadable retained alert on %s: %s", item.topic, exc)
            return
        if isinstance(message, AlertMessage) and self.alerts.restore(message):
            log.info("restored alert state of %s/%s: %s", message.gate, message.lane, message.level.value)

    def _reject(self, item: Received, reason: str, detail: str) -> None:
        self.health.on_rejected(reason)
        self._log_rejection(item.topic, reason, detail)
        letter = DeadLetter(
            topic=item.topic[:512], reason=reason[:40], detail=detail[:1000],
            payload=item.payload[:2048].decode("utf-8", "backslashreplace")[:2048], at=self.clock(),
        )
        self.subscriber.publish(DEAD_LETTER, encode(letter), qos=1)

    def _log_rejection(self, topic: str, reason: str, detail: str) -> None:
        """One line per reason per second, and a count of the rest: a flood of bad input must not
        flood the journal (or cost more than rejecting it); every message is on the dead-letter topic."""
        now = time.monotonic()
        since, quiet = self._rejection_log.get(reason, (0.0, 0))
        if now - since < REJECTION_LOG_S:
            self._rejection_log[reason] = (since, quiet + 1)
            return
        if quiet:
            log.warning("%d more messages rejected for %s in the last %.0f s (each one is on %s)", quiet, reason,
                        now - since, DEAD_LETTER)
        self._rejection_log[reason] = (now, 0)
        log.warning("rejected message on %s: %s: %.200s", topic, reason, detail)

    def _db_rejected(self, line: str, reason: str) -> None:
        """A line the database refused for good (a type conflict, a point beyond its retention):
        dead-lettered with the database's own words. Called by the writer, from either thread."""
        self.health.on_rejected("db_rejected")
        letter = DeadLetter(topic=schema.origin_topic(line)[:512], reason="db_rejected", detail=reason[:1000],
                            payload=line[:2048], at=self.clock())
        self.subscriber.publish(DEAD_LETTER, encode(letter), qos=1)

    def _on_events(self, events: list[AlertEvent]) -> None:
        if events:
            self._note_start()
        for e in events:
            log.info("alert %s %s/%s %s (%s): %s", "raised" if e.active else "cleared", e.gate, e.lane, e.rule,
                     e.level.value, e.text)
            self._batch.lines.extend(schema.lines([schema.alert_point(e)]))
        self._publish_alerts(all_lanes=False)

    def _publish_alerts(self, *, all_lanes: bool) -> None:
        changed = self.alerts.take_changed()
        lanes = self.alerts.lanes() if all_lanes else sorted(changed)
        if not lanes:
            return
        at = self.clock()
        for gate, lane in lanes:
            state = self.alerts.state(gate, lane, at)
            self.subscriber.publish(str(Topic.alert(gate, lane)), encode(state), qos=1, retain=True)
            self.metrics.on_alert_state(state)

    # -- the batch: stored (database or spool), then acknowledged ------------------------------

    def _note_start(self) -> None:
        if not self._batch.messages and not self._batch.lines:
            self._batch.started = time.monotonic()

    def _flush(self) -> None:
        batch = self._batch
        if not batch.messages and not batch.lines:
            return
        try:
            self.writer.write(batch.lines)
        except SpoolError as exc:
            # neither database nor disk: keep the batch unacknowledged (broker and units keep its
            # messages) and try again shortly; the writer has logged why, once
            if not isinstance(exc, SpoolFull):
                log.error("cannot store batch of %d messages: %s", batch.messages, exc)
            self.spool_full = True
            self.health.on_held()
            self._stop.wait(0.5)
            return
        self.spool_full = False
        for item in batch.acks:
            self.subscriber.ack(item.mid, item.qos, item.generation)
        for message in batch.handled:
            self.stored.on_durable(message)
        self.health.on_stored(batch.accepted)
        self._batch = _Batch()

    def _publish_stored(self, now: float) -> None:
        """Each unit's retained acknowledgement, at most once per stored.min_interval_s."""
        due = self.stored.due(now)
        if not due:
            return
        at = self.clock()
        for (gate, unit), through, gaps, resets in due:
            message = StoredMessage(gate=gate, unit=unit, through_seq=through, at=at, gaps=gaps, resets=resets)
            self.subscriber.publish(str(Topic.stored(gate, unit)), encode(message), qos=1, retain=True)
            self.metrics.record_seq(gate, unit, gaps=gaps, resets=resets)

    def _on_written(self, seconds: float, points: int) -> None:
        self.health.on_write(seconds, points)
        self.metrics.on_write(seconds, points)

    # -- the cross-gate view -------------------------------------------------------------------

    def _summary_tick(self) -> None:
        """The current interval's gate summaries and ranking: stored, and published retained, when
        they changed since the last tick (the same interval computed again overwrites its points)."""
        at = self.summary.bucket()
        if at is None:
            return
        gates, province = self.summary.summarize(at)
        messages = {gate_summary_topic(g.gate): encode(g) for g in gates}
        messages[PROVINCE_SUMMARY] = encode(province)
        changed = {t: p for t, p in messages.items() if self._summary_sent.get(t) != p}
        if not changed:
            return
        self._note_start()
        self._batch.lines.extend(schema.lines(schema.summary_points(gates, province)))
        for topic, payload in changed.items():
            self.subscriber.publish(topic, payload, qos=1, retain=True)
        self._summary_sent.update(changed)

    # -- health --------------------------------------------------------------------------------

    def _health_tick(self) -> None:
        snap = self.health.snapshot(
            self.clock(), spool_depth=self.writer.spool.depth, db_up=self.writer.db_up,
            mqtt_connected=self.subscriber.connected.is_set(), db_rejected_points=self.writer.rejected_points,
            units_seq=self.stored.health(), spool_bytes=self.writer.spool.size_bytes, spool_full=self.spool_full,
            bypassed_batches=self.writer.bypassed, lanes_unsaved=self.validator.ownership.unsaved,
            mqtt_takeovers=self.subscriber.takeovers,
        )
        self.subscriber.publish(SERVER_HEALTH, snap.model_dump_json(by_alias=True).encode(), qos=1, retain=True)
        self._note_start()
        points = [schema.server_health_point(snap.server, snap.at, health_fields(snap))]
        for name, seq in snap.units_seq.items():
            gate, unit = name.split("/", 1)
            self.metrics.record_seq(gate, unit, gaps=seq.gaps, resets=seq.resets)
            points.append(schema.unit_seq_point(gate, unit, snap.at, {
                "through_seq": seq.through_seq, "pending": seq.pending, "gaps": seq.gaps, "resets": seq.resets,
                "key_clashes": snap.key_clashes.get(name, 0), "ahead_of_clock": snap.ahead_of_clock.get(name, 0),
            }))
        self._batch.lines.extend(schema.lines(points))


def build(config: ServerConfig, clock: Clock = utc_now) -> Server:
    """The production wiring: the configured sink, the spool file, a real MQTT client."""
    spool = Spool(config.spool.path, max_bytes=config.spool.max_bytes, reserve_bytes=config.spool.reserve_bytes)
    try:
        return Server(config, sink=make_sink(config.influx), spool=spool, clock=clock, lanes_file=config.lanes_file)
    except BaseException:
        spool.close()  # a config error after the spool's lock: let the next start have it
        raise


@contextmanager
def running(config: ServerConfig, clock: Clock = utc_now) -> Iterator[Server]:
    """Run a server in a background thread for the duration of a `with` block (tests, benchmark)."""
    server = build(config, clock)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run()
        except BaseException as exc:  # surfaced to the caller on exit
            errors.append(exc)

    thread = threading.Thread(target=target, name="gatewatch-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.request_stop()
        thread.join(30)
        server.writer.sink.close()
        server.writer.spool.close()
    if errors:
        raise errors[0]
