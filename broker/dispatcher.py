"""The webhook dispatcher: reads each subscription's matching events from its store's log and
POSTs them, signed, to the subscription's URL. Design and guarantees: ``docs/webhooks.md``.

Replicas share the subscriptions through **leases**: a subscription is delivered by the one
replica holding ``dg:{store}:wh:<id>:lease`` (``SET NX PX``, renewed every third of its TTL).
Every write that records an outcome is fenced by that lease, so a replica that lost it stops that
subscription and can never move its progress. A replica takes at most its fair share
(``ceil(subscriptions / live replicas)``), releases the excess when replicas join, and picks up
a dead replica's subscriptions once their leases expire.

Per subscription (``_Worker``): events in log order; at most ``max_in_flight`` requests at once,
never two of the same stream, so each stream's events arrive in order; a failed attempt is
retried after an exponential delay with full jitter, and after the last attempt the event goes
to the dead-letter list. Progress (``lastProcessedEventGlobalPosition``) is saved after every
round of finished deliveries, together with the positions finished ahead of it, so a crash
repeats at most the requests that were in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import os
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal, Protocol

import httpx

from . import codec
from .aio import cancel_and_wait
from .errors import BrokerError
from .keys import WEBHOOK_DISPATCHERS, StoreKeys, WebhookKeys
from .log import EventLog
from .pubsub import Listener
from .redis import call, load_script
from .types import LoggedEvent
from .webhooks import RetryPolicy, WebhookStore, WebhookSubscription, secret_key, signature

log = logging.getLogger("deltagate.dispatcher")

Ref = tuple[str, str]
"""(store, subscription id)."""
Result = Literal["success", "failure", "timeout"]

STANDARD_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Retry delays (ceilings, seconds) after each failed attempt, as Standard Webhooks suggests:
5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about a day and a day and a half."""
MAX_RETRY_DELAY = 24 * 3600.0
PAGE = 256
PAGES_PER_ROUND = 8
"""Log pages one subscription reads before it gets on with delivering (a sparse filter)."""
WINDOW_CHARS = 16 * 1024 * 1024
"""Event text one subscription holds in memory at most."""
ERROR_BODY_BYTES = 64 * 1024
"""Response bytes read (then dropped) so a connection can be reused."""
USER_AGENT = f"deltagate-webhooks/{version('deltagate')}"
DOORBELL_TICK = 0.2
"""Seconds between updates of the channels the doorbell listens to."""
RETRY_COOLDOWN = 5.0
"""Seconds before a replica takes a subscription back after its worker failed."""


class DispatchObserver(Protocol):
    """Where the dispatcher reports what it does (the CLI wires Prometheus metrics to it)."""

    def attempt(self, result: Result, seconds: float) -> None: ...

    def retry(self) -> None: ...

    def dead_letter(self) -> None: ...


class _Unobserved:
    def attempt(self, result: Result, seconds: float) -> None:
        pass

    def retry(self) -> None:
        pass

    def dead_letter(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class DispatcherOptions:
    lease_seconds: float = 5.0
    """A dead replica's subscriptions are taken over about this long after it died."""
    poll_interval: float = 1.0
    """How often to look for new subscriptions and new events (pub/sub only rings the bell)."""
    max_in_flight: int = 16
    """Requests in flight per subscription (never two of one stream)."""
    window: int = 1000
    """Matching events one subscription may have read ahead of its saved position."""
    max_connections: int = 100
    """Requests in flight of the whole replica."""
    keepalive: int = 8
    """Idle connections each subscription keeps open for its next requests."""
    timeout: float = 10.0
    """Seconds per request, unless the subscription says otherwise."""
    retry_schedule: tuple[float, ...] = STANDARD_SCHEDULE
    auto_pause_seconds: float = 5 * 24 * 3600.0
    """A subscription whose endpoint kept failing this long is auto-paused (0: never)."""
    dead_letter_limit: int = 10_000
    drain_seconds: float = 20.0
    """On close, in-flight requests get this long to finish."""
    replica_id: str | None = None


def retry_delay(
    policy: RetryPolicy, schedule: tuple[float, ...], failed: int, rng: random.Random
) -> float:
    """Seconds to wait after the ``failed``-th failed attempt: uniform in [0, ceiling] ("full
    jitter"), the ceiling growing exponentially: ``backoffSeconds * 2**(failed-1)`` when the
    subscription sets a backoff, else the schedule's entry (its last one repeating)."""
    if policy.backoff_seconds is not None:
        ceiling = min(policy.backoff_seconds * 2.0 ** min(failed - 1, 64), MAX_RETRY_DELAY)
    else:
        ceiling = schedule[min(failed - 1, len(schedule) - 1)]
    return rng.uniform(0.0, ceiling)


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5,300,1800"`` -> (5.0, 300.0, 1800.0); ValueError unless 1 to 99 positive numbers."""
    values = tuple(float(part) for part in text.split(",") if part.strip())
    if not 1 <= len(values) <= 99 or any(
        not math.isfinite(v) or not 0 < v <= MAX_RETRY_DELAY for v in values
    ):
        raise ValueError("1 to 99 comma-separated delays in seconds, each above 0 and <= 86400")
    return values


class _Stopped(Exception):
    """The worker must stop: ``lost`` (another replica holds the lease) or ``gone`` (deleted)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Item:
    """One matching event of a subscription, from being read until it is finished."""

    __slots__ = ("attempts", "event_id", "json", "not_before", "position", "state", "stream_id")

    def __init__(self, event: LoggedEvent, event_id: str) -> None:
        self.position = event.global_position
        self.stream_id = event.stream_id
        self.event_id = event_id
        self.json = event.json
        self.attempts = 0
        self.not_before = 0.0
        self.state: Literal["pending", "flying", "waiting", "done"] = "pending"

    def __lt__(self, other: _Item) -> bool:
        return self.position < other.position


@dataclass(frozen=True, slots=True)
class _Attempt:
    result: Result
    error: str
    seconds: float


class _Worker:
    """Delivers one subscription while this replica holds its lease. Stopped gently with
    ``stop()`` (in-flight requests finish, progress is saved) or at once by cancelling
    ``task`` (lease lost, subscription deleted)."""

    def __init__(self, dispatcher: Dispatcher, ref: Ref, valid_until: float) -> None:
        self.d = dispatcher
        self.ref = ref
        self.store, self.id = ref
        self.valid_until = valid_until
        """Monotonic time until which the lease is known to be ours."""
        self.position = 0
        """Saved lastProcessedEventGlobalPosition."""
        self.rev = -1
        self.stopping = False
        self._wake = asyncio.Event()
        self._reload = False
        self._more = True
        self._rung = 0  # doorbell rings so far: a read that started before one is not the last
        self._next_poll = 0.0
        self._flying: dict[asyncio.Task[_Attempt], _Item] = {}
        self._order: deque[_Item] = deque()  # read, not yet below the saved position
        self._streams: dict[str, deque[_Item]] = {}  # unfinished items per stream, in order
        self._ready: list[_Item] = []  # heap: stream heads that may start now
        self._waiting: list[tuple[float, _Item]] = []  # heap: stream heads waiting to retry
        self._chars = 0
        self._cursor = 0  # last position read from the log
        self._known_attempts: dict[str, int] = {}
        self._known_done: set[int] = set()
        self._redrive_pending = False
        self._redrive: _Item | None = None
        self._new_done: list[int] = []
        self._finished: list[str] = []
        self._redriven: list[str] = []
        self._succeeded = False
        self._sub: WebhookSubscription | None = None
        self._http: httpx.AsyncClient | None = None
        self._key = b""
        self._fields: dict[str, Any] = {}
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"webhook {self.store}/{self.id}"
        )

    # -- controls ---------------------------------------------------------------------------

    def poke(self) -> None:
        """New events may be in the log."""
        self._more = True
        self._rung += 1
        self._wake.set()

    def announce(self, events: list[LoggedEvent]) -> None:
        """Events just appended (from the store's live channel). Those that directly follow
        the cursor are taken as they are, saving a read of the log; anything else (a gap, a
        full window, a subscription still loading) means: read the log."""
        if self._sub is None:
            self.poke()
            return
        flt = self._sub.config.filter
        for event in events:
            if event.global_position <= self._cursor:
                continue
            if event.global_position != self._cursor + 1 or not self._has_room():
                self.poke()
                return
            self._cursor = event.global_position
            if flt.matches(event.stream_id, event.type):
                self._add(event)
        self._wake.set()

    def reload(self) -> None:
        """The record changed (pause, resume, redrive, config)."""
        self._reload = True
        self._wake.set()

    def stop(self) -> None:
        """Start no more requests, let those in flight finish, save progress, return."""
        self.stopping = True
        self._wake.set()

    @property
    def active(self) -> bool:
        return self._sub is not None and self._sub.status == "active"

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> str:
        try:
            self._http = self.d.client()
            await self._load()
            while not self.stopping:
                self._wake.clear()
                if self._reload:
                    await self._reload_record()
                await self._finish()
                if self._may_start():
                    await self._fill()
                    await self._next_redrive()
                    self._start()
                await self._save()
                await self._sleep()
            while self._flying:
                self._wake.clear()
                await self._finish()
                if self._flying:
                    await self._wake.wait()
            await self._finish()
            await self._save()
            return "stopped"
        except _Stopped as stop:
            return stop.reason
        finally:
            for task in self._flying:
                task.cancel()
            if self._flying:
                await asyncio.wait(self._flying)
            if self._http is not None:
                await self.d.release_client(self._http)

    async def _load(self) -> None:
        loaded = await self.d.store.load(self.store, self.id)
        if loaded is None:
            raise _Stopped("gone")
        sub, state = loaded
        self._apply(sub)
        self.position = self._cursor = sub.position
        self._known_attempts = state.attempts
        self._known_done = state.done
        self._redrive_pending = state.redrive > 0

    def _apply(self, sub: WebhookSubscription) -> None:
        was_active = self.active
        self._sub = sub
        self.rev = sub.rev
        self._key = secret_key(sub.secret)
        self._fields = {"eventStoreName": self.store, "subscriptionId": self.id}
        if self.active and not was_active:
            # Resumed: whatever waited for a retry is due now.
            for _, item in self._waiting:
                item.state = "pending"
                heapq.heappush(self._ready, item)
            self._waiting.clear()
            if self._redrive is not None and self._redrive.state == "waiting":
                self._redrive.state = "pending"

    async def _reload_record(self) -> None:
        self._reload = False
        loaded = await self.d.store.load(self.store, self.id)
        if loaded is None:
            raise _Stopped("gone")
        sub, state = loaded
        self._apply(sub)
        self._redrive_pending = self._redrive_pending or state.redrive > 0

    def _may_start(self) -> bool:
        return self.active and time.monotonic() < self.valid_until

    async def _fill(self) -> None:
        """Read matching events after the cursor while the window has room."""
        now = time.monotonic()
        if now >= self._next_poll:
            self._more = True
            self._next_poll = now + self.d.options.poll_interval
        assert self._sub is not None
        flt = self._sub.config.filter
        for _ in range(PAGES_PER_ROUND):
            if not self._may_read():
                return
            want = min(PAGE, self.d.options.window - len(self._order))
            rung = self._rung
            page = await self.d.log.read_after(self.store, self._cursor, want)
            for event in page:
                if event.global_position <= self._cursor:
                    continue  # an announcement got there during the read
                self._cursor = event.global_position
                if flt.matches(event.stream_id, event.type):
                    self._add(event)
            if len(page) < want and rung == self._rung:
                self._more = False

    def _add(self, event: LoggedEvent) -> None:
        if event.global_position in self._known_done:
            # Delivered before this replica took over: only the position matters.
            self._known_done.discard(event.global_position)
            item = _Item(event, "")
            item.state = "done"
            item.json = ""
            self._order.append(item)
            return
        item = _Item(event, str(codec.loads(event.json)["eventId"]))
        item.attempts = self._known_attempts.pop(item.event_id, 0)
        self._order.append(item)
        self._chars += len(item.json)
        queue = self._streams.get(item.stream_id)
        if queue is None:
            self._streams[item.stream_id] = deque([item])
            heapq.heappush(self._ready, item)
        else:
            queue.append(item)

    async def _next_redrive(self) -> None:
        """Take the oldest dead letter queued for redelivery, if none is being delivered."""
        if self._redrive is not None or not self._redrive_pending or self._redriven:
            return  # (one whose delivery is not saved yet would still be at the head)
        head = await self.d.store.next_redrive(self.store, self.id)
        if head is None:
            self._redrive_pending = False
            return
        event_id, position, _ = head
        page = await self.d.log.read_after(self.store, position - 1, 1)
        if not page or page[0].global_position != position:
            self._redriven.append(event_id)  # the event left the log: drop its dead letter
            self._redrive_pending = False  # look again after saving
            return
        self._redrive = _Item(page[0], event_id)

    def _start(self) -> None:
        now = time.monotonic()
        while self._waiting and self._waiting[0][0] <= now:
            _, item = heapq.heappop(self._waiting)
            item.state = "pending"
            heapq.heappush(self._ready, item)
        slots = self.d.options.max_in_flight - len(self._flying)
        redrive = self._redrive
        if redrive is not None and redrive.state == "waiting" and redrive.not_before <= now:
            redrive.state = "pending"
        if redrive is not None and redrive.state == "pending" and slots > 0:
            self._launch(redrive)
            slots -= 1
        while slots > 0 and self._ready:
            self._launch(heapq.heappop(self._ready))
            slots -= 1

    def _launch(self, item: _Item) -> None:
        item.state = "flying"
        task = asyncio.get_running_loop().create_task(self._attempt(item))
        task.add_done_callback(lambda _: self._wake.set())
        self._flying[task] = item

    async def _finish(self) -> None:
        """Take the outcome of every finished request: progress, retry or dead letter."""
        for task in [t for t in self._flying if t.done()]:
            item = self._flying.pop(task)
            outcome = task.result()
            self.d.observer.attempt(outcome.result, outcome.seconds)
            if outcome.result == "success":
                self._succeeded = True
                self._complete(item, dead=False)
                continue
            item.attempts += 1
            # Every failed attempt is recorded (last error, failure streak, auto-pause), the
            # last one too; then the event waits for a retry or goes to the dead letters.
            status = await self.d.store.failed(
                self.store,
                self.id,
                self.d.replica,
                event_id=item.event_id,
                position=None if item is self._redrive else item.position,
                attempts=item.attempts,
                error=outcome.error,
                auto_pause_ms=int(self.d.options.auto_pause_seconds * 1000),
            )
            self._check(status)
            if status == "paused":
                log.warning(
                    "webhook subscription auto-paused",
                    extra={"store": self.store, "subscription": self.id, "error": outcome.error},
                )
                self._reload = True
            if item.attempts >= self._max_attempts():
                await self._dead_letter(item, outcome.error)
                continue
            self.d.observer.retry()
            item.state = "waiting"
            assert self._sub is not None
            item.not_before = time.monotonic() + retry_delay(
                self._sub.config.retry, self.d.options.retry_schedule, item.attempts, self.d.rng
            )
            if item is not self._redrive:
                heapq.heappush(self._waiting, (item.not_before, item))

    async def _dead_letter(self, item: _Item, error: str) -> None:
        self.d.observer.dead_letter()
        status, dropped = await self.d.store.dead_letter(
            self.store,
            self.id,
            self.d.replica,
            event_id=item.event_id,
            position=item.position,
            stream_id=item.stream_id,
            event_json=item.json,
            attempts=item.attempts,
            error=error,
            limit=self.d.options.dead_letter_limit,
        )
        self._check(status)
        if dropped:
            log.warning(
                "dead-letter list full: dropped the oldest",
                extra={"store": self.store, "subscription": self.id, "dropped": dropped},
            )
        self._complete(item, dead=True)

    def _complete(self, item: _Item, *, dead: bool) -> None:
        if item is self._redrive:
            if not dead:
                self._redriven.append(item.event_id)
            self._redrive = None
            self._redrive_pending = True
            return
        item.state = "done"
        self._chars -= len(item.json)
        item.json = ""
        if item.attempts and not dead:
            self._finished.append(item.event_id)
        self._new_done.append(item.position)
        queue = self._streams[item.stream_id]
        queue.popleft()  # only a stream's head is ever started
        if queue:
            heapq.heappush(self._ready, queue[0])
        else:
            del self._streams[item.stream_id]

    def _max_attempts(self) -> int:
        assert self._sub is not None
        return self._sub.config.retry.max_attempts or len(self.d.options.retry_schedule) + 1

    async def _save(self) -> None:
        """Save progress when something finished (one round trip, fenced by the lease)."""
        while self._order and self._order[0].state == "done":
            self._order.popleft()
        position = self._order[0].position - 1 if self._order else self._cursor
        if position == self.position and not (
            self._new_done or self._finished or self._redriven or self._succeeded
        ):
            return
        status = await self.d.store.progress(
            self.store,
            self.id,
            self.d.replica,
            position=position,
            succeeded=self._succeeded,
            done=[p for p in self._new_done if p > position],
            finished=self._finished,
            redriven=self._redriven,
        )
        self._check(status)
        if self._redriven:
            self._redrive_pending = True
        self.position = max(self.position, position)
        self._new_done.clear()
        self._finished.clear()
        self._redriven.clear()
        self._succeeded = False

    def _check(self, status: str) -> None:
        if status in ("lost", "gone"):
            raise _Stopped(status)

    async def _sleep(self) -> None:
        if self.stopping or self._reload or any(t.done() for t in self._flying):
            return
        now = time.monotonic()
        if self._may_start() and (
            (self._ready and len(self._flying) < self.d.options.max_in_flight)
            or self._may_read()
            or (self._redrive_pending and self._redrive is None and not self._redriven)
        ):
            return
        until = self._next_poll if self._next_poll > now else now + self.d.options.poll_interval
        if self._waiting:
            until = min(until, self._waiting[0][0])
        if self._redrive is not None and self._redrive.state == "waiting":
            until = min(until, self._redrive.not_before)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, until - now)):
                await self._wake.wait()

    def _may_read(self) -> bool:
        """New events may be waiting and the window has room for a page of them (refilling it
        one event per finished delivery would cost a read per delivery)."""
        window = self.d.options.window
        return (
            self._more
            and len(self._order) <= window - min(PAGE, max(1, window // 2))
            and self._chars < WINDOW_CHARS
        )

    def _has_room(self) -> bool:
        return len(self._order) < self.d.options.window and self._chars < WINDOW_CHARS

    # -- one request ------------------------------------------------------------------------

    async def _attempt(self, item: _Item) -> _Attempt:
        sub = self._sub
        assert sub is not None
        config = sub.config
        timeout = config.timeout or self.d.options.timeout
        body = codec.json_object(self._fields, event=item.json)
        stamp = int(time.time())
        headers = dict(config.headers)
        headers["content-type"] = "application/json"
        headers["webhook-id"] = item.event_id
        headers["webhook-timestamp"] = str(stamp)
        headers["webhook-signature"] = signature(self._key, item.event_id, stamp, body)
        async with self.d.connection_slot():
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    status = await self._post(config.url, body, headers, timeout)
            except (TimeoutError, httpx.TimeoutException):
                return _Attempt("timeout", f"no answer within {timeout:g} s", _since(started))
            except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
                detail = str(exc) or exc.__class__.__name__
                return _Attempt("failure", f"{exc.__class__.__name__}: {detail}", _since(started))
        seconds = _since(started)
        if 200 <= status < 300:
            return _Attempt("success", "", seconds)
        hint = " (redirects are not followed)" if 300 <= status < 400 else ""
        return _Attempt("failure", f"HTTP {status}{hint}", seconds)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], seconds: float) -> int:
        """POST and return the status; the response body is read (up to a bound, so the
        connection can be reused) and dropped. ``seconds`` bounds each phase (connect, write,
        read); the caller bounds the whole."""
        assert self._http is not None
        async with self._http.stream(
            "POST", url, content=body, headers=headers, timeout=seconds
        ) as response:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > ERROR_BODY_BYTES:
                    break
            return response.status_code


def _since(started: float) -> float:
    return time.perf_counter() - started


class Dispatcher:
    """One dispatcher replica. ``await run()`` delivers until ``await close()``, which drains:
    no new requests, those in flight finish (within ``drain_seconds``), progress is saved and
    the leases are released for other replicas."""

    def __init__(
        self,
        redis: Any,
        options: DispatcherOptions | None = None,
        *,
        observer: DispatchObserver | None = None,
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._redis = redis
        self.options = options or DispatcherOptions()
        self.store = WebhookStore(redis)
        self.log = EventLog(redis)
        self.observer: DispatchObserver = observer or _Unobserved()
        self.rng = rng or random.Random()
        self.replica = self.options.replica_id or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        )
        self._lease = load_script(redis, "wh_lease")
        self._http = http
        """A client shared by every subscription (tests); by default each has its own."""
        self._ssl: Any = None
        self._slots = asyncio.Semaphore(self.options.max_connections)
        self._workers: dict[Ref, _Worker] = {}
        self._by_store: dict[str, set[_Worker]] = {}
        self._cooldown: dict[Ref, float] = {}
        self._heads: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._state: Literal["new", "running", "draining", "closed"] = "new"
        self._doorbell = Listener(
            redis, self, tick_interval=DOORBELL_TICK, name="dispatcher doorbell"
        )
        self.healthy = False
        """True while Redis answers the balancing loop."""
        self.replicas = 1

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._state in ("draining", "closed")

    async def run(self) -> None:
        if self._state != "new":
            raise RuntimeError("a Dispatcher runs once")
        self._state = "running"
        if self._http is None:
            self._ssl = httpx.create_ssl_context()  # loading CA certificates once
        loop = asyncio.get_running_loop()
        every = self._every
        tasks = [
            loop.create_task(every(self.options.poll_interval, self._balance), name="balance"),
            loop.create_task(every(self.options.lease_seconds / 3, self._renew), name="renew"),
        ]
        await self._doorbell.start()
        try:
            await self._stop.wait()
            self._state = "draining"
            await self._drain()
        finally:
            await cancel_and_wait(tasks)
            await self._doorbell.close()
            workers = list(self._workers.values())
            await cancel_and_wait(w.task for w in workers)
            await self._release([w.ref for w in workers])
            with contextlib.suppress(BrokerError):
                await asyncio.wait_for(call(self._redis.zrem(WEBHOOK_DISPATCHERS, self.replica)), 2)
            self._workers.clear()
            self._by_store.clear()
            self._state = "closed"
            self._done.set()

    async def close(self) -> None:
        """Drain and stop; safe to call twice, and before ``run``."""
        if self._state == "new":
            self._state = "closed"
            return
        self._stop.set()
        await self._done.wait()

    async def _drain(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            worker.stop()
        if workers:
            await asyncio.wait([w.task for w in workers], timeout=self.options.drain_seconds)
        for worker in workers:
            if worker.task.done():
                self._forget(worker)
        await self._release([w.ref for w in workers if w.task.done()])

    # -- what the CLI and metrics read ------------------------------------------------------

    def lags(self) -> dict[Ref, int]:
        """Events (of any type) each owned subscription is behind its store's head."""
        return {
            ref: max(0, self._heads.get(ref[0], w.position) - w.position)
            for ref, w in self._workers.items()
        }

    def owned(self) -> list[Ref]:
        return list(self._workers)

    @contextlib.asynccontextmanager
    async def connection_slot(self) -> Any:
        """Bounds the replica's requests in flight to its connection pool, so waiting for a
        connection never counts against a request's timeout."""
        async with self._slots:
            yield

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for one subscription. Each has its own small pool: httpcore's pool
        bookkeeping costs O(connections**2) per request, so one pool for every subscription
        would make each request dearer the more subscriptions a replica holds."""
        if self._http is not None:
            return self._http
        return httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=self.options.max_in_flight,
                max_keepalive_connections=min(self.options.keepalive, self.options.max_in_flight),
            ),
            timeout=httpx.Timeout(self.options.timeout),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
            verify=self._ssl,
        )

    async def release_client(self, client: httpx.AsyncClient) -> None:
        if client is not self._http:
            await client.aclose()

    # -- balancing --------------------------------------------------------------------------

    async def _every(self, interval: float, step: Callable[[], Any]) -> None:
        """Run ``step`` every ``interval`` seconds; a failure is logged, never fatal."""
        while True:
            try:
                await step()
                self.healthy = True
            except BrokerError as exc:
                self.healthy = False
                log.warning("dispatcher cannot reach Redis", extra={"error": exc.message})
            except Exception:
                self.healthy = False
                log.exception("dispatcher error", extra={"step": step.__name__})
            await asyncio.sleep(interval)

    async def _balance(self) -> None:
        ttl_ms = int(self.options.lease_seconds * 1000)
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(WEBHOOK_DISPATCHERS, {self.replica: now_ms})
            pipe.zremrangebyscore(WEBHOOK_DISPATCHERS, "-inf", now_ms - ttl_ms)
            pipe.zcard(WEBHOOK_DISPATCHERS)
            _, _, replicas = await call(pipe.execute())
        self.replicas = max(1, int(replicas))
        await self._reap()
        refs = await self.store.all_refs()
        known = set(refs)
        for ref, worker in list(self._workers.items()):
            if ref not in known:
                await self._cancel(worker)
        owned = list(self._workers.items())
        revisions = await self.store.revisions([ref for ref, _ in owned])
        for (_, worker), rev in zip(owned, revisions, strict=True):
            if rev is None:
                await self._cancel(worker)
            elif rev != worker.rev:
                worker.reload()
        self._heads = await self.store.heads(sorted(self._by_store))
        if self._state != "running":
            return
        share = math.ceil(len(refs) / self.replicas)
        running = [w for w in self._workers.values() if not w.stopping]
        if len(running) > share:
            # Replicas joined: hand the excess over (each finishes its requests first).
            for worker in running[share:]:
                worker.stop()
            return
        await self._acquire([r for r in refs if r not in self._workers], share - len(running))

    async def _acquire(self, candidates: list[Ref], need: int) -> None:
        now = time.monotonic()
        candidates = [r for r in candidates if self._cooldown.get(r, 0.0) <= now]
        if need <= 0 or not candidates:
            return
        self.rng.shuffle(candidates)
        async with self._redis.pipeline(transaction=False) as pipe:
            for store, sub_id in candidates:
                pipe.exists(WebhookKeys(store).lease(sub_id))
            held = await call(pipe.execute())
        for ref, taken in zip(candidates, held, strict=True):
            if need <= 0 or self._state != "running":
                return
            if taken:
                continue
            started = time.monotonic()
            if await self._lease_op("acquire", ref):
                worker = _Worker(self, ref, started + self.options.lease_seconds)
                self._workers[ref] = worker
                self._by_store.setdefault(ref[0], set()).add(worker)
                need -= 1

    async def _reap(self) -> None:
        """Forget workers that ended; release the leases of those that ended on their own."""
        release: list[Ref] = []
        for worker in [w for w in self._workers.values() if w.task.done()]:
            self._forget(worker)
            if worker.task.cancelled():
                continue
            exc = worker.task.exception()
            if exc is None:
                if worker.task.result() == "stopped":
                    release.append(worker.ref)
                continue
            self._cooldown[worker.ref] = time.monotonic() + RETRY_COOLDOWN
            if isinstance(exc, BrokerError):
                log.warning(
                    "webhook subscription paused by a Redis error; retrying",
                    extra={"store": worker.store, "subscription": worker.id, "error": exc.message},
                )
            else:
                log.error(
                    "webhook worker failed",
                    exc_info=exc,
                    extra={"store": worker.store, "subscription": worker.id},
                )
                release.append(worker.ref)
        await self._release(release)

    def _forget(self, worker: _Worker) -> None:
        if self._workers.get(worker.ref) is worker:
            del self._workers[worker.ref]
        peers = self._by_store.get(worker.store)
        if peers is not None:
            peers.discard(worker)
            if not peers:
                del self._by_store[worker.store]

    async def _cancel(self, worker: _Worker) -> None:
        await cancel_and_wait([worker.task])
        self._forget(worker)

    # -- leases -----------------------------------------------------------------------------

    async def _lease_op(self, op: str, ref: Ref) -> bool:
        store, sub_id = ref
        ttl_ms = int(self.options.lease_seconds * 1000)
        return bool(
            await call(
                self._lease(
                    keys=[WebhookKeys(store).lease(sub_id)], args=[op, self.replica, ttl_ms]
                )
            )
        )

    async def _renew(self) -> None:
        workers = list(self._workers.values())
        if not workers:
            return
        started = time.monotonic()
        ttl_ms = int(self.options.lease_seconds * 1000)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for w in workers:
                    await self._lease(  # queues it on the pipeline
                        keys=[WebhookKeys(w.store).lease(w.id)],
                        args=["renew", self.replica, ttl_ms],
                        client=pipe,
                    )
                held = await call(pipe.execute())
        except BrokerError:
            # Cannot tell: stop whatever may no longer be ours.
            for w in workers:
                if time.monotonic() >= w.valid_until:
                    w.task.cancel()
            raise
        for w, ok in zip(workers, held, strict=True):
            if ok:
                w.valid_until = started + self.options.lease_seconds
            elif not w.task.done():
                log.info(
                    "lease lost: another replica delivers this subscription now",
                    extra={"store": w.store, "subscription": w.id},
                )
                w.task.cancel()

    async def _release(self, refs: list[Ref]) -> None:
        for ref in refs:
            try:
                await asyncio.wait_for(self._lease_op("release", ref), 2)
            except (BrokerError, TimeoutError):
                return  # the leases expire by themselves

    # -- the doorbell (broker.pubsub.Listener's owner) -----------------------------------------
    # Hands what an append announces on its store's channel to that store's workers (the
    # announcement carries the events' JSON). Only a doorbell as far as correctness goes: workers
    # also poll the log, so a lost message or a broken connection costs latency only.

    async def announced(self, channel: str, data: str) -> None:
        store = channel[channel.index("{") + 1 : channel.rindex("}")]
        workers = self._by_store.get(store)
        if workers:
            events = codec.decode_announcement(data).events
            for worker in workers:
                worker.announce(events)

    async def tick(self) -> None:
        """Listen to the channels of the stores this replica delivers, and only those."""
        wanted = {StoreKeys(s).channel for s in self._by_store}
        have = self._doorbell.channels
        await self._doorbell.unsubscribe(*(have - wanted))
        await self._doorbell.subscribe(*(wanted - have))
