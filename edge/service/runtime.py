"""The long-running edge service: pipeline records -> loop counts -> outbox -> MQTT, plus health,
GPIO and systemd supervision.

Threads, and why each exists:

- the caller's (main) thread iterates the pipeline, because that is where the camera blocks and
  where signal handlers run;
- paho's network thread and the outbox drain thread (both owned by `Publisher`) keep the link
  and the backlog moving while the pipeline waits for frames;
- a ticker thread sends health, refreshes GPIO (alerts go stale with no message to say so)
  and pets the systemd watchdog, but only while the pipeline shows progress, so a hung camera
  read gets the unit restarted instead of being hidden by a healthy-looking side thread.

Everything the runtime touches (pipeline, outbox, publisher, signals, loop sensors, health
readers, clock, notifier) is injected, so tests run it against a real broker with a fake
pipeline, and the CLI wires the real ones.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from edge import EdgeError, __version__
from edge.config import UnitConfig
from edge.service.discovery import Discovery
from edge.service.health import HealthSampler, PipelineFigures
from edge.service.ledger import merge_windows, window_key
from edge.service.loop_sensor import LoopSensors
from edge.service.outbox import LedgerEntry, Outbox, OutboxCorrupt, OutboxError
from edge.service.publisher import Publisher
from edge.service.signals import SignalBoard
from wire.errors import WireError
from wire.payloads import (
    AlertMessage,
    CameraState,
    CountsMessage,
    CrossingEvent,
    EventMessage,
    StatusMessage,
    UnitState,
    WindowRecord,
    decode_message,
    encode,
)
from wire.topics import UNIT_KINDS, Topic, TopicKind

log = logging.getLogger(__name__)

#: how often the ticker wakes: fast enough for a lane light to go unknown promptly.
TICK_S = 0.25
#: one line a minute at most about messages the disk refused
LOSS_LOG_INTERVAL_S = 60.0


class PipelineStatsLike(Protocol):
    @property
    def fps(self) -> float: ...
    @property
    def inference_ms(self) -> float: ...
    @property
    def camera(self) -> CameraState: ...
    @property
    def frames(self) -> int: ...


class PipelineLike(Protocol):
    """What the runtime needs from `edge.pipeline.Pipeline`."""

    @property
    def stats(self) -> PipelineStatsLike: ...
    def records(self) -> Iterator[WindowRecord]: ...
    def close(self) -> None: ...


@runtime_checkable
class Stoppable(Protocol):
    def stop(self) -> None: ...


class SdNotifier:
    """systemd's notify protocol: one datagram per state to $NOTIFY_SOCKET; a no-op outside systemd."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        #: systemd's advice is to pet the watchdog at half its interval.
        self.watchdog_interval_s = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, state: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(state.encode())
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", state, exc)
            return False
        return True


class EdgeRuntime:
    def __init__(
        self,
        cfg: UnitConfig,
        outbox: Outbox,
        *,
        publisher: Publisher | None = None,
        signals: SignalBoard | None = None,
        loops: LoopSensors | None = None,
        health: HealthSampler | None = None,
        notifier: SdNotifier | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        flush_timeout_s: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.clock = clock
        self.monotonic = monotonic
        self.flush_timeout_s = flush_timeout_s
        self.signals = signals
        self.loops = loops
        self.notifier = notifier or SdNotifier({})
        self.health = health or HealthSampler(
            cfg.gate, cfg.unit, cfg.health.interval_s, wall_clock=clock, monotonic=monotonic
        )
        #: Home Assistant discovery, when the unit's config turns it on
        self.discovery = Discovery(cfg) if cfg.homeassistant.enabled else None
        self.publisher = publisher or Publisher(
            cfg.mqtt,
            cfg.gate,
            cfg.unit,
            outbox,
            status=self.status_message,
            subscriptions=[str(Topic.alert(cfg.gate, s.lane)) for s in cfg.gpio.lane_signals]
            + (self.discovery.subscriptions() if self.discovery else []),
            on_message=self.on_mqtt_message,
            resend_after_s=cfg.outbox.resend_after_s,
            on_connect=self.discovery.on_connect if self.discovery else None,
        )
        from edge.service.metrics import EdgeMetrics  # prometheus_client, only for a unit in service

        self.metrics = EdgeMetrics(self)
        self._topics = {k: str(Topic.unit(cfg.gate, cfg.unit, k)) for k in UNIT_KINDS}
        self._stop = threading.Event()
        self._running = False
        self._pipeline: PipelineLike | None = None
        self._progress_at = monotonic()
        self._frames_seen = -1
        self.records_enqueued = 0
        self.records_merged = 0
        self.events_enqueued = 0
        self.health_sent = 0
        self.unsendable = 0
        #: messages the disk refused in this run (the outbox counts them across runs, for health)
        self.storage_losses = 0
        self._unlogged_losses = 0
        self._losses_logged_at = float("-inf")

    # -- messages ---------------------------------------------------------------------------------

    def status_message(self, state: UnitState) -> StatusMessage:
        """`status` carries the last seq enqueued so far rather than taking one: it is retained
        state, not part of the stream, and a subscriber can compare it with what it has seen."""
        return StatusMessage(
            gate=self.cfg.gate,
            unit=self.cfg.unit,
            seq=self.outbox.last_seq,
            state=state,
            at=datetime.fromtimestamp(self.clock(), UTC),
            version=__version__,
            config_hash=self.cfg.config_hash(),
        )

    def enqueue_record(self, record: WindowRecord) -> int:
        """Enqueue one window record; a second piece of a window already emitted (a restart
        inside it, the clock stepping back) is merged with the first and sent as one record.
        Raises ValueError for a record the contract rejects, OutboxError for the disk."""
        if self.loops is not None:
            record = self.loops.annotate(record)
        key = window_key(record)
        earlier = self.outbox.emitted(key)
        if earlier is not None:
            record = merge_windows(WindowRecord.model_validate_json(earlier), record)
            self.records_merged += 1
            log.info("window %s of lane %s was emitted before (a restart inside it, or the clock stepped "
                     "back); sending the two pieces merged as one record", record.window_start, record.lane)
        merged = record
        seq = self.outbox.enqueue(
            self._topics[TopicKind.COUNTS],
            lambda s: encode(CountsMessage.from_record(merged, s)),
            ledger=LedgerEntry(key, merged.window_start.timestamp(), merged.model_dump_json().encode()),
        )
        self.records_enqueued += 1
        self.publisher.notify()
        if self.discovery is not None:
            self.discovery.on_record(self.publisher.client, record, connected=self.publisher.connected)
        return seq

    def _storage_loss(self, what: str, exc: OutboxError) -> None:
        """A message the disk refused: counted (the outbox keeps the count for health, and its seq
        shows as a gap at the server), logged once a minute at most, and counting goes on."""
        if isinstance(exc, OutboxCorrupt):
            raise exc  # a restart moves the damaged database aside; running on would lose everything
        self.storage_losses += 1
        self._unlogged_losses += 1
        now = self.monotonic()
        if now - self._losses_logged_at >= LOSS_LOG_INTERVAL_S:
            log.error("%d message(s) lost since the last report, the outbox could not store them (%s, last: "
                      "%s); counting goes on", self._unlogged_losses, exc, what)
            self._unlogged_losses = 0
            self._losses_logged_at = now

    def on_event(self, event: CrossingEvent) -> None:
        """Pipeline hook for per-crossing events (when `counting.events` is on)."""
        cfg = self.cfg
        try:
            self.outbox.enqueue(
                self._topics[TopicKind.EVENTS],
                lambda s: encode(EventMessage(gate=cfg.gate, unit=cfg.unit, seq=s, event=event)),
            )
        except ValueError as exc:  # called inside the pipeline: one bad event must not stop counting
            self.unsendable += 1
            log.error("crossing event on lane %s not sendable, skipped: %s", event.lane, exc)
            return
        except OutboxError as exc:
            self._storage_loss(f"crossing event on lane {event.lane}", exc)
            return
        self.events_enqueued += 1
        self.publisher.notify()

    def send_health(self) -> int:
        p = self._pipeline
        figures = (
            PipelineFigures(p.stats.fps, p.stats.inference_ms, p.stats.camera)
            if p is not None
            else PipelineFigures(0.0, 0.0, CameraState.DOWN)
        )
        # Sample first (vcgencmd may take a moment), then take a seq inside the outbox's
        # transaction: the pipeline must never wait on a thermometer.
        message = self.health.sample(0, figures, self.outbox.stats())
        topic = self._topics[TopicKind.HEALTH]
        try:
            seq = self.outbox.enqueue(topic, lambda s: encode(message.model_copy(update={"seq": s})))
        except OutboxError as exc:
            self._storage_loss("health", exc)
            if exc.seq is None:
                return -1
            # The disk refused it: send it straight (not durable) under the number it took, so the
            # server still learns about the trouble (outbox_lost) while it lasts.
            direct = message.model_copy(update={"seq": exc.seq, "outbox_lost": self.outbox.lost})
            if self.publisher.publish_direct(topic, encode(direct)):
                self.health_sent += 1
            return exc.seq
        self.health_sent += 1
        self.publisher.notify()
        return seq

    def on_mqtt_message(self, topic: str, payload: bytes) -> None:
        """Alert state from the server, for the lane lights; Home Assistant's birth and our own
        discovery topics; anything malformed is ignored."""
        if self.discovery is not None and self.discovery.on_message(self.publisher.client, topic, payload):
            return
        if self.signals is None:
            return
        try:
            parsed = Topic.parse(topic)
        except WireError:
            return
        if parsed.kind != TopicKind.ALERT:
            return
        if not payload:  # retained alert deleted: the server no longer vouches for any state
            self.signals.on_alert(None, parsed.scope)
            return
        try:
            message = decode_message(topic, payload)
        except WireError as exc:
            log.warning("ignoring bad alert on %s: %s", topic, exc)
            return
        if isinstance(message, AlertMessage):
            self.signals.on_alert(message, message.lane)

    # -- lifecycle --------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets flags."""
        self._stop.set()
        if isinstance(self._pipeline, Stoppable):
            self._pipeline.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def pipeline(self) -> PipelineLike | None:
        """The pipeline being run (None before `run`)."""
        return self._pipeline

    def run(self, pipeline: PipelineLike) -> None:
        """Run until the pipeline ends (a file) or a stop is requested; then flush and go offline."""
        self._pipeline = pipeline
        if self._stop.is_set() and isinstance(pipeline, Stoppable):
            pipeline.stop()  # SIGTERM arrived while the model was loading
        self._running = True
        self.metrics.attach(pipeline)
        self.metrics.start()
        self.publisher.start()
        ticker = threading.Thread(target=self._tick_loop, name="edge-ticker", daemon=True)
        ticker.start()
        self.notifier.notify("READY=1\nSTATUS=counting")
        ended = False
        try:
            stoppable = isinstance(pipeline, Stoppable)
            for record in pipeline.records():
                try:
                    self.enqueue_record(record)
                except ValueError as exc:  # the contract rejects it (pydantic): skip it, keep counting
                    self.unsendable += 1
                    log.error("window record %s/%s at %s not sendable, skipped: %s",
                              record.unit, record.lane, record.window_start, exc)
                except OutboxError as exc:
                    self._storage_loss(f"window record of lane {record.lane} at {record.window_start}", exc)
                self._progress_at = self.monotonic()
                # A stoppable pipeline ends by itself after a stop, once it has flushed every lane's
                # open window: breaking here would lose all but the first of those records.
                if self._stop.is_set() and not stoppable:
                    break
            ended = not self._stop.is_set()
        finally:
            self._running = False
            self._stop.set()
            self.notifier.notify("STOPPING=1")
            try:
                pipeline.close()
            finally:
                ticker.join(timeout=5)
                self.shutdown(drain_all=ended)

    def shutdown(self, *, drain_all: bool = False) -> None:
        """Flush, go offline, release GPIO and the outbox. `drain_all`: the source ended on its
        own (a replayed file), so wait for the whole backlog rather than a bounded flush."""
        try:
            self.publisher.stop(self.flush_timeout_s, drain_all=drain_all)
        finally:
            self.metrics.stop()
            if self.signals is not None:
                self.signals.close()
            if self.loops is not None:
                self.loops.close()
            left = len(self.outbox)
            self.outbox.close()
            log.info(
                "edge stopped: %d record(s) enqueued this run, %d message(s) left in the outbox",
                self.records_enqueued, left,
            )

    def _alive(self) -> bool:
        """Has the pipeline moved recently? Frames or records both count (a dead camera still
        closes windows, with camera_up 0)."""
        p = self._pipeline
        if p is not None and p.stats.frames != self._frames_seen:
            self._frames_seen = p.stats.frames
            self._progress_at = self.monotonic()
        limit = max(3 * self.cfg.counting.window_s, 60.0)
        return self.monotonic() - self._progress_at < limit

    def _tick_loop(self) -> None:
        next_health = self.monotonic() + self.cfg.health.interval_s
        next_watchdog = self.monotonic()
        stalled = False
        while not self._stop.wait(TICK_S):
            try:
                now = self.monotonic()
                if now >= next_health:
                    next_health = now + self.cfg.health.interval_s
                    self.send_health()
                if self.signals is not None:
                    p = self._pipeline
                    camera = p.stats.camera if p is not None else CameraState.DOWN
                    self.signals.tick(running=self._running, connected=self.publisher.connected, camera=camera)
                wd = self.notifier.watchdog_interval_s
                if wd is not None and now >= next_watchdog:
                    if self._alive():
                        self.notifier.notify("WATCHDOG=1")
                        next_watchdog = now + wd
                        stalled = False
                    elif not stalled:
                        stalled = True
                        log.error("pipeline made no progress; letting the systemd watchdog restart the unit")
            except EdgeError as exc:
                log.error("edge ticker: %s", exc)
            except Exception:  # loop boundary: health/GPIO trouble must not stop counting
                log.exception("edge ticker failed")
