"""MQTT publisher: drains the durable outbox to the broker, and owns the unit's `status`.

Two flaws of common edge MQTT clients are designed out here:

- Messages are never dropped while disconnected: the publisher only ever sends what is in the
  outbox. A PUBACK (``on_publish`` with its mid) marks the row *acked*; the row leaves the outbox
  only when the server's retained ``<gate>/<unit>/stored`` says its seq is durable on the server.
- A refused connection (bad credentials, not authorised) is never mistaken for a connection:
  ``connected`` becomes true only on a CONNACK whose reason code is success.

Why keep acked rows: mosquitto keeps what it acknowledged in memory and saves it every
``autosave_interval``; a broker that crashes (or loses power) in between loses it, and the PUBACK
lied. A row acked but not confirmed stored after ``outbox.resend_after_s`` is published again;
the server writes every record to the same point, so a re-send is harmless. Re-sending everything
while the server is simply offline would flood the broker's queue with copies, so the publisher
re-sends all overdue rows only while the server shows it is alive (a live `stored` message within
``resend_after_s``); otherwise it re-sends just the oldest overdue row, as a probe, at a backoff
interval: if the broker lost it, the server stores it and answers, and the rest follows.

The session is persistent (fixed client id ``<gate>-<unit>``, MQTT 5 ``clean_start=False`` with a
session expiry), so messages in flight when the link drops are re-sent by paho on reconnect with
the same mid, and their PUBACKs still find their outbox rows. paho's network loop runs in its
own thread (``loop_start``) and reconnects with exponential backoff; a separate drain thread
feeds it from the outbox at a bounded rate, so a day-long backlog does not flood the broker or
the uplink when the link comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from common.mqtt import client_for
from edge import EdgeError
from edge.config import MqttConfig
from edge.service.outbox import Outbox, OutboxError, OutboxRow
from wire.errors import WireError
from wire.payloads import StatusMessage, StoredMessage, UnitState, decode_message, encode
from wire.topics import Topic, TopicKind

log = logging.getLogger(__name__)

#: how long `stop()` waits for the PUBACK of the final `offline` status.
OFFLINE_ACK_TIMEOUT_S = 3.0
#: how long a clean stop waits, once everything is acknowledged, for the server to confirm it
#: stored it (only when this server speaks the `stored` protocol): an empty outbox at exit.
STORED_WAIT_S = 2.0
#: the longest interval between probe re-sends while the server shows no sign of life
PROBE_MAX_S = 900.0
#: one line a minute at most about outbox trouble seen by the drain
ERROR_LOG_INTERVAL_S = 60.0

StatusFactory = Callable[[UnitState], StatusMessage]
MessageHandler = Callable[[str, bytes], None]
ConnectHook = Callable[[mqtt.Client], None]


class PublisherError(EdgeError):
    """The MQTT client cannot connect at all (bad options); TLS set-up errors are common.mqtt.MqttError."""


class LinkState(StrEnum):
    """What the unit knows about its broker link; only CONNECTED means messages can flow."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


class TokenBucket:
    """Rate limit for the drain; the clock is injected so the rate can be tested without sleeping."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = max(1.0, burst)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until the next token, for the drain loop's sleep."""
        return max(0.0, (1.0 - self._tokens) / self.rate)


class Publisher:
    """Owns the paho client: connection, status/LWT, subscriptions and the outbox drain."""

    def __init__(
        self,
        cfg: MqttConfig,
        gate: str,
        unit: str,
        outbox: Outbox,
        *,
        status: StatusFactory,
        subscriptions: list[str] | None = None,
        on_message: MessageHandler | None = None,
        resend_after_s: float = 120.0,
        on_connect: ConnectHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        client: mqtt.Client | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`client`: a paho client to drive instead of one built from `cfg` (common.mqtt); the
        publisher sets its callbacks and Last Will either way. `on_connect`: called on paho's thread
        after every successful connect, once `online` is sent and the subscriptions are made (Home
        Assistant discovery announces itself there)."""
        self.cfg = cfg
        self.outbox = outbox
        self.client_id = f"{gate}-{unit}"
        self._status = status
        self._status_topic = str(Topic.unit(gate, unit, TopicKind.STATUS))
        self._stored_topic = str(Topic.stored(gate, unit))
        self.resend_after_s = resend_after_s
        self._wall = wall_clock
        self._subscriptions = list(subscriptions or [])
        self._on_message = on_message
        self._on_connect_hook = on_connect
        self._clock = clock
        self._state = LinkState.CONNECTING
        self._state_lock = threading.Lock()
        self._last_refusal: str | None = None
        self._unreachable_logged = False
        self.connects = 0
        self.connect_attempts = 0
        self.refusals = 0
        self.published = 0
        self.acked = 0
        self.rejected = 0
        self.resent = 0
        self.confirmed = 0
        #: mid -> outbox seq for messages sent but not yet acknowledged. Only the drain thread
        #: touches it; PUBACKs arrive on paho's thread and are handed over through `_acks`,
        #: because paho calls on_publish while holding its own lock (a shared lock would deadlock).
        self._inflight: dict[int, int] = {}
        self._acks: deque[tuple[int, bool]] = deque()
        #: (through_seq, retained) from the server's `stored`, handed over like the acks
        self._stored: deque[tuple[int, bool]] = deque()
        self._unsaved_acks: list[int] = []
        self._stored_pending = 0
        #: monotonic time of the last live (not retained) `stored`: the server is up and storing
        self._stored_live_at: float | None = None
        self.stored_seen = False
        self.stored_through = 0
        self._ignored_through = -1
        self._probe_interval = resend_after_s
        self._next_probe = 0.0
        self._resend_cursor = 0
        self._next_resend_check = 0.0
        self._errors_logged_at = float("-inf")
        self._cursor = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._drain_thread: threading.Thread | None = None
        self._bucket = TokenBucket(cfg.drain_rate_per_s, min(cfg.drain_rate_per_s / 10, cfg.max_inflight), clock)
        self.client = client or self._make_client()
        self._attach(self.client)

    # -- set-up -----------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        """The unit's client; a unit without its password still counts into the outbox (and says so)."""
        cfg = self.cfg
        password = cfg.password(required=False)
        if not cfg.username and password:
            log.warning("mqtt: a password is set but no username; connecting without credentials")
        return client_for(cfg, self.client_id, password=password, max_inflight=cfg.max_inflight,
                          reconnect_s=(cfg.reconnect_min_s, cfg.reconnect_max_s))

    def _attach(self, client: mqtt.Client) -> None:
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message_cb
        client.on_subscribe = self._on_subscribe
        self._set_will(client)

    def _set_will(self, client: mqtt.Client) -> None:
        """Refresh the Last Will before each CONNECT, so its seq and time are those of this session."""
        client.will_set(self._status_topic, encode(self._status(UnitState.OFFLINE)), qos=1, retain=True)

    # -- paho callbacks (paho's network thread) --------------------------------------------------

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self.connect_attempts += 1
        self._set_will(client)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.refusals += 1
            self._set_state(LinkState.REFUSED)
            text = str(reason_code)
            if text != self._last_refusal:
                # Logged once per distinct reason: a wrong password retried every minute for a
                # week must not bury everything else in the journal.
                log.error(
                    "mqtt broker %s:%d refused the connection: %s (check mqtt.username and the "
                    "password in %s); retrying with backoff, records stay in the outbox",
                    self.cfg.host, self.cfg.port, text, self.cfg.password_env,
                )
                self._last_refusal = text
            else:
                log.debug("mqtt broker refused the connection again: %s", text)
            return
        self.connects += 1
        self._last_refusal = None
        self._unreachable_logged = False
        log.info(
            "mqtt connected to %s:%d as %s (session present: %s)",
            self.cfg.host, self.cfg.port, self.client_id, flags.session_present,
        )
        client.publish(self._status_topic, encode(self._status(UnitState.ONLINE)), qos=1, retain=True)
        for topic in [self._stored_topic, *self._subscriptions]:
            client.subscribe(topic, qos=1)
        if self._on_connect_hook is not None:
            try:
                self._on_connect_hook(client)
            except Exception:  # a bad hook must not kill paho's network thread, nor the link
                log.exception("on-connect hook failed")
        self._set_state(LinkState.CONNECTED)
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._set_state(LinkState.UNREACHABLE)
        if not self._unreachable_logged:
            log.warning(
                "mqtt broker %s:%d unreachable (%s failed); buffering to the outbox and retrying with backoff",
                self.cfg.host, self.cfg.port, "TCP connect or TLS handshake" if self.cfg.tls_ca_file else "TCP connect",
            )
            self._unreachable_logged = True

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._stopping.is_set():
            self._set_state(LinkState.STOPPED)
            return
        with self._state_lock:
            was = self._state
            if was == LinkState.CONNECTED:
                self._state = LinkState.DISCONNECTED
        if was == LinkState.CONNECTED:
            log.warning("mqtt connection lost (%s); buffering to the outbox", reason_code)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        self._acks.append((mid, not reason_code.is_failure))
        self._wake.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        denied = [str(rc) for rc in reason_codes if rc.is_failure]
        if denied:
            # Without `stored` the outbox keeps every row until the disk bound drops it; without
            # alerts the lane lights can only show "unknown": say why, loudly.
            log.error("mqtt broker refused a subscription (%s): check the unit's ACL grants read on %s "
                      "and on its gate's alerts", ", ".join(denied), self._stored_topic)

    def _on_message_cb(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._stored_topic:
            self._on_stored(bytes(message.payload), bool(message.retain))
            return
        if self._on_message is None:
            return
        try:
            self._on_message(message.topic, bytes(message.payload))
        except Exception:  # a bad handler must not kill paho's network thread
            log.exception("handling message on %s failed", message.topic)

    def _on_stored(self, payload: bytes, retained: bool) -> None:
        if not payload:
            return  # the retained copy was deleted (a server reset): nothing to learn
        try:
            message = decode_message(self._stored_topic, payload)
        except WireError as exc:
            log.warning("ignoring a bad stored message on %s: %s", self._stored_topic, exc)
            return
        if isinstance(message, StoredMessage):
            self._stored.append((message.through_seq, retained))
            self._wake.set()

    def _set_state(self, state: LinkState) -> None:
        with self._state_lock:
            self._state = state

    # -- public ---------------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state == LinkState.CONNECTED

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def start(self) -> None:
        """Connect in the background: an unreachable broker at boot is normal, not fatal."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        try:
            self.client.connect_async(
                self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=False, properties=props
            )
        except (OSError, ValueError) as exc:
            raise PublisherError(f"mqtt connect to {self.cfg.host}:{self.cfg.port} failed: {exc}") from None
        self.client.loop_start()
        self._drain_thread = threading.Thread(target=self._drain_loop, name="outbox-drain", daemon=True)
        self._drain_thread.start()

    def notify(self) -> None:
        """Wake the drain loop: something was just enqueued."""
        self._wake.set()

    def flush(self, timeout_s: float, *, until_idle: bool = False) -> bool:
        """Wait until the broker has acknowledged everything in the outbox.

        With `until_idle`, give up only after `timeout_s` without progress: a replayed file must
        deliver all of its backlog before the process exits, however long that takes, but not
        hang forever on a dead link.
        """
        deadline = time.monotonic() + timeout_s
        pending = self.outbox.pending
        while time.monotonic() < deadline:
            now_pending = self.outbox.pending
            if now_pending == 0:
                return True
            if until_idle and now_pending < pending:
                deadline = time.monotonic() + timeout_s
            pending = now_pending
            self._wake.set()
            time.sleep(0.05)
        return self.outbox.pending == 0

    def wait_stored(self, timeout_s: float) -> bool:
        """Wait until the server has confirmed every row (the outbox is empty)."""
        deadline = time.monotonic() + timeout_s
        while len(self.outbox) and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        return len(self.outbox) == 0

    def publish_direct(self, topic: str, payload: bytes) -> bool:
        """Publish without the outbox (QoS 1, not durable): for health when the disk refuses it,
        so the server still hears about the trouble. False if the client would not take it."""
        info = self.client.publish(topic, payload, qos=1)
        return info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)

    def stop(self, flush_timeout_s: float = 5.0, *, drain_all: bool = False) -> None:
        """Drain what can be drained, announce `offline`, disconnect cleanly.

        What is not acknowledged in time stays in the outbox for the next start. `drain_all`
        (the source ended by itself) keeps draining for as long as the backlog shrinks.
        """
        # A source that ended by itself (a file) may finish before the first CONNACK: wait for the
        # link then too, but give up after `flush_timeout_s` without progress.
        if (self.connected or drain_all) and flush_timeout_s > 0:
            if not self.flush(flush_timeout_s, until_idle=drain_all):
                log.warning("shutdown: %d message(s) not yet sent, left in the outbox for the next start",
                            self.outbox.pending)
            elif self.connected and self.stored_seen:
                self.wait_stored(min(flush_timeout_s, STORED_WAIT_S))
        was_connected = self.connected
        self._stopping.set()
        self._wake.set()
        if self._drain_thread is not None:
            self._drain_thread.join(timeout=5)
            self._process_acks()
            self._process_stored()
        if was_connected:
            info = self.client.publish(
                self._status_topic, encode(self._status(UnitState.OFFLINE)), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=OFFLINE_ACK_TIMEOUT_S)
            except (RuntimeError, ValueError) as exc:
                log.warning("offline status not sent: %s", exc)
            self._process_acks()
        self.client.disconnect()
        self.client.loop_stop()
        self._set_state(LinkState.STOPPED)

    # -- drain (its own thread) -----------------------------------------------------------------

    def _process_acks(self) -> None:
        done: list[int] = self._unsaved_acks
        self._unsaved_acks = []
        while self._acks:
            mid, ok = self._acks.popleft()
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue  # status publishes are not outbox rows
            if ok:
                done.append(seq)
            else:
                # The broker refused this message (e.g. not authorised on this topic). Keeping it
                # is the only lossless choice; it is re-sent on the next start and health shows
                # its growing age.
                self.rejected += 1
                log.error("mqtt broker rejected message seq %d; kept in the outbox", seq)
        if done:
            try:
                self.acked += self.outbox.mark_acked(done, self._wall())
            except OutboxError as exc:
                # The rows stay unsent on disk; keep the acks and try again on the next round.
                self._unsaved_acks = done
                self._log_outbox_error(exc)

    def _process_stored(self) -> None:
        """Forget the rows the server holds. A through_seq beyond our own numbering is about an
        earlier life of this unit id (a re-imaged unit, before the server noticed the reset)."""
        through = self._stored_pending
        last = self.outbox.last_seq
        while self._stored:
            seq, retained = self._stored.popleft()
            if not retained:
                self._stored_live_at = self._clock()
                self._probe_interval = self.resend_after_s
            self.stored_seen = True
            if seq > last:
                if seq != self._ignored_through:
                    self._ignored_through = seq
                    log.warning("the server says stored through seq %d, beyond this unit's last seq %d: ignored "
                                "(it is about an earlier numbering of this unit)", seq, last)
                continue
            through = max(through, seq)
        if through <= self.stored_through and not self._stored_pending:
            return
        self._stored_pending = 0
        try:
            self.confirmed += self.outbox.stored(through)
        except OutboxError as exc:
            self._stored_pending = through  # retried on the next round
            self._log_outbox_error(exc)
            return
        self.stored_through = through

    def _log_outbox_error(self, exc: OutboxError) -> None:
        now = time.monotonic()
        if now - self._errors_logged_at >= ERROR_LOG_INTERVAL_S:
            log.error("%s; retrying (one line a minute at most)", exc)
            self._errors_logged_at = now

    def _drain_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                pause = self._drain_once()
            except OutboxError as exc:  # a full or failing disk: say so once a minute, keep trying
                self._log_outbox_error(exc)
                pause = 1.0
            except Exception:  # the drain thread is a loop boundary: log, back off, carry on
                log.exception("outbox drain failed; retrying")
                pause = 1.0
            self._wake.wait(pause)
            self._wake.clear()

    def _drain_once(self) -> float:
        """Send what the rate and in-flight limits allow; return how long to sleep."""
        self._process_acks()
        self._process_stored()
        if not self.connected:
            return 0.5
        room = self.cfg.max_inflight - len(self._inflight)
        if room <= 0:
            return 0.5  # woken by the next PUBACK
        rows = self.outbox.peek_after(self._cursor, room)
        resend = False
        if not rows:
            rows = self._overdue(room)
            if not rows:
                return 1.0  # woken by notify()
            resend = True
        for row in rows:
            if self._stopping.is_set() or not self.connected:
                return 0.1
            if not self._bucket.take():
                return self._bucket.wait_s()
            info = self.client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("mqtt publish of seq %d failed: %s", row.seq, mqtt.error_string(info.rc))
                return 0.5
            # MQTT_ERR_NO_CONN: the link dropped just now; paho keeps the message and sends it
            # after reconnecting, so it is in flight all the same.
            self._inflight[info.mid] = row.seq
            self.published += 1
            if resend:
                self.resent += 1
                self._resend_cursor = row.seq
            else:
                self._cursor = row.seq
        return 0.0

    def _overdue(self, room: int) -> list[OutboxRow]:
        """Rows the broker acknowledged `resend_after_s` ago or more that the server has not
        confirmed: all of them while the server shows it is alive, else one probe at a time."""
        now = self._clock()
        if now < self._next_resend_check:
            return []
        self._next_resend_check = now + min(5.0, self.resend_after_s / 4)
        acked_before = self._wall() - self.resend_after_s
        flying = set(self._inflight.values())
        alive = self._stored_live_at is not None and now - self._stored_live_at < self.resend_after_s
        if not alive:
            if now < self._next_probe:
                return []
            rows = [r for r in self.outbox.due_for_resend(0, acked_before, len(flying) + 1) if r.seq not in flying]
            if rows:
                log.info("seq %d acknowledged by the broker %.0fs ago and not confirmed stored; re-sending it "
                         "as a probe (the server has not confirmed anything for a while)",
                         rows[0].seq, self._wall() - (rows[0].acked or 0.0))
                self._next_probe = now + self._probe_interval
                self._probe_interval = min(2 * self._probe_interval, max(PROBE_MAX_S, self.resend_after_s))
            return rows[:1]
        rows = [r for r in self.outbox.due_for_resend(self._resend_cursor, acked_before, room + len(flying))
                if r.seq not in flying][:room]
        if not rows:
            self._resend_cursor = 0  # a pass is complete; the next one starts from the oldest
            return []
        if self._resend_cursor == 0:
            log.warning("re-sending messages from seq %d: acknowledged by the broker over %.0fs ago and not "
                        "confirmed stored by the server (lost in a broker crash?)", rows[0].seq, self.resend_after_s)
        self._next_resend_check = now  # more may follow at once
        return rows
