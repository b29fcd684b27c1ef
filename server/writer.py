"""Makes a batch durable: straight into the sink, or into the spool while the database is away.

Order is kept by one rule: while anything is spooled, new batches join the end of the spool
instead of overtaking it, and only the replay thread writes spooled batches, oldest first. The
rule yields to a full spool: once the spool refuses a batch, a database that is up takes it
directly, so fresh records never wait behind a spool that cannot grow (writes are idempotent per
point, so overtaking costs order, not data). With the database down and the spool full, `write`
raises `SpoolFull`: the caller keeps the batch unacknowledged, and the broker and the units keep
its messages until there is somewhere to put them.

The processing thread never blocks on a database that is down; it blocks on an SQLite commit at
worst. Lines the database refuses for good are isolated by bisecting the batch, and each is
handed to `on_rejected` with the database's reason (the server dead-letters it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from server.sinks import Sink, SinkRejected, SinkUnavailable
from server.spool import Spool, SpoolError

log = logging.getLogger(__name__)

LatencyHook = Callable[[float, int], None]
#: (line, the database's reason)
RejectedHook = Callable[[str, str], None]


class DurableWriter:
    def __init__(
        self, sink: Sink, spool: Spool, *, replay_batch: int = 5000, retry_min_s: float = 0.5,
        retry_max_s: float = 10.0, on_written: LatencyHook | None = None, on_rejected: RejectedHook | None = None,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.replay_batch = replay_batch
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.rejected_points = 0
        #: batches written past a full spool
        self.bypassed = 0
        self._on_written = on_written
        self._on_rejected = on_rejected
        self._db_up = spool.depth == 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down_logged = False
        self._full_logged = False

    @property
    def db_up(self) -> bool:
        return self._db_up

    def start(self) -> None:
        self._thread = threading.Thread(target=self._replay_loop, name="spool-replay", daemon=True)
        self._thread.start()
        if self.spool.depth:
            log.info("spool %s holds %d points from before; replaying", self.spool.path, self.spool.depth)
            self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def write(self, lines: Sequence[str]) -> None:
        """Return once `lines` are in the database or the spool; SpoolError (SpoolFull) if neither
        can take them now."""
        if not lines:
            return
        if self._db_up and self.spool.depth == 0:
            try:
                self._write_isolating(lines)
                return
            except SinkUnavailable as exc:
                self._mark_down(exc)
        try:
            self.spool.append(lines)
        except SpoolError as exc:
            if not self._db_up:
                self._log_full(exc, "the database is down too; holding the batch unacknowledged")
                raise
            self._log_full(exc, "writing fresh batches straight to the database")
            try:
                self._write_isolating(lines)
            except SinkUnavailable as down:
                self._mark_down(down)
                raise exc from None
            self.bypassed += 1
            return
        self._full_logged = False
        self._wake.set()

    def _log_full(self, exc: SpoolError, then: str) -> None:
        if not self._full_logged:
            log.error("%s; %s", exc, then)
            self._full_logged = True

    def _mark_down(self, exc: Exception) -> None:
        self._db_up = False
        if not self._down_logged:
            log.error("database unavailable, spooling to %s: %s", self.spool.path, exc)
            self._down_logged = True

    def _write_isolating(self, lines: Sequence[str]) -> None:
        """Write; if the database refuses the batch for good, find the bad lines by bisection and
        hand each to `on_rejected` with the database's reason."""
        t0 = time.monotonic()
        try:
            self.sink.write(lines)
        except SinkRejected as exc:
            if len(lines) == 1:
                self.rejected_points += 1
                log.error("database rejected a point: %s: %.300s", exc, lines[0])
                if self._on_rejected is not None:
                    self._on_rejected(lines[0], str(exc))
                return
            mid = len(lines) // 2
            self._write_isolating(lines[:mid])
            self._write_isolating(lines[mid:])
            return
        if self._on_written is not None:
            self._on_written(time.monotonic() - t0, len(lines))

    def _replay_loop(self) -> None:
        delay = self.retry_min_s
        while not self._stop.is_set():
            if self.spool.depth == 0:
                self._wake.wait()  # set by write() once it had to spool
                self._wake.clear()
                if self._stop.is_set():
                    return
            try:
                while (batch := self.spool.peek(self.replay_batch)) is not None and not self._stop.is_set():
                    self._write_isolating(batch.lines)
                    self._db_up = True  # fresh batches may pass a full spool from here on
                    self.spool.remove_through(batch.last_id)
            except SinkUnavailable as exc:
                self._mark_down(exc)
                self._stop.wait(delay)  # back off; appends must not turn into a retry storm
                delay = min(self.retry_max_s, delay * 2)
                continue
            except SpoolError as exc:  # rows replayed but not deletable: replayed again later, harmlessly
                log.error("%s; retrying", exc)
                self._stop.wait(delay)
                delay = min(self.retry_max_s, delay * 2)
                continue
            except Exception:  # the replay thread must outlive any one surprise
                log.exception("spool replay failed; retrying")
                self._stop.wait(delay)
                delay = min(self.retry_max_s, delay * 2)
                continue
            delay = self.retry_min_s
            if self.spool.depth == 0 and self._down_logged:
                log.info("database back (%s); spool replayed", self.sink.target)
                self._down_logged = False
                self._db_up = True
