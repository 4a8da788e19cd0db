"""Live fan-out on one pod: ``Fanout`` is the local registry of live subscriptions (centrifuge's
Hub): a gapless ``Feed`` per store, fed by the process's pub/sub ``Listener`` and repaired from
the log, and ``LiveSubscription``s that switch between catching up from the log and live delivery.
Invariants: ``docs/streaming.md``.

Nothing here knows about WebSockets: a subscription hands events to a ``Sink`` (the gateway's
session), which says whether it had room, and the fan-out never awaits a client.

Size: ~650 lines: Feed, LiveSubscription and Fanout hand state to each other every event (the
feed's seen position, a subscription's cursor, demotion); kept together so the gapless
invariant reads in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from . import codec
from .aio import cancel_and_wait
from .budget import QueueBudget
from .errors import BrokerError, TooManyPatterns
from .filters import Filter, FilterIndex
from .keys import StoreKeys
from .log import EventLog
from .pages import PageReader
from .pubsub import Listener
from .reader import CLOCK_SKEW, Slice
from .redis import call
from .types import LoggedEvent, StartPosition, TimeStart

log = logging.getLogger("deltagate.fanout")

REPLAY_CHECKPOINT_INTERVAL = 1.0
MAX_COMPLEX_PATTERNS = 256
"""Distinct complex patterns (``filters.is_complex``: ``a*b``, ``tenant.*.order.*``) that one
store's subscriptions on a pod may hold, live or catching up. Each is matched once per event
type new to the feed (``FilterIndex``), so this bounds that work per event: a tenant whose 800
subscriptions held 25,600 distinct 16-wildcard patterns froze a pod for 7 s per 100-event
append. Exact, ``head*`` and ``*tail`` patterns cost a dict lookup and are not counted; patterns
many clients share count once."""
DEFAULT_MAX_QUEUED_BYTES = 128 * 1024 * 1024
SMALL_PAGE = 50
OVER_BUDGET_RECHECK = 0.1
FUTURE_START_RECHECK = 0.2
"""Seconds a subscription starting from a time still ahead waits before it looks again for
events to pass over (or for the time to come)."""
SKEW = CLOCK_SKEW.total_seconds()
"""How far pods' clocks may disagree: a start from a time goes live only this long after it, so
an event stamped by a slow clock before it is never delivered live."""
SMALL_PAGE_CACHE_CHARS = 1024 * 1024

Marker = Literal["caughtUp", "checkpoint"]
Reset = Literal["store-recreated", "position-ahead"]


class Subscribed(NamedTuple):
    sub: LiveSubscription
    head: int
    """The store's head at subscribe time."""
    epoch: str
    """The store's epoch."""
    reset: Reset | None
    """Set when the requested start did not exist (the subscription then starts from earliest)."""


class Sink(Protocol):
    """Where a subscription's messages go (a WebSocket session's outbox)."""

    def send_event(
        self, sub: LiveSubscription, event: LoggedEvent, shared: dict[Any, Any] | None
    ) -> bool:
        """Queue an event; False when there is no room (the subscription is then demoted).

        ``shared`` is one dict per live event, handed to every sink the event goes to on this
        pod during its turn of the fan-out (None for a replay, which is per subscription): a
        sink keeps there what every sink like it would build again for the same event (a
        WebSocket sink: the frame bytes, keyed by the subscription's message prefix; an SSE
        sink: its message), so that is built once per event, not once per subscriber. Keys
        are the sink's own (use objects of your own type, or strings only one sink kind makes);
        values must not be changed once stored."""
        ...

    def send_marker(self, sub: LiveSubscription, kind: Marker, position: int) -> bool:
        """Queue a caughtUp or checkpoint message; False when there is no room."""
        ...

    def send_reset(self, sub: LiveSubscription, reason: Reset, epoch: str, head: int) -> None:
        """Say that the subscription's position no longer exists in the store's history (the
        store was re-created, or its log is shorter than the position): it starts again from
        the store's earliest event, then live."""
        ...

    def send_truncated(self, sub: LiveSubscription, requested: int, earliest: int) -> None:
        """Say that the events after ``requested`` and before ``earliest`` are gone (retention
        deleted them): the subscription goes on from ``earliest``."""
        ...

    async def wait_room(self) -> None:
        """Return once the sink has drained enough to take a burst again."""
        ...


@dataclass
class FanoutStats:
    """Counters the gateway exports as metrics (read at scrape time, no cost per event)."""

    delivered_live: int = 0
    delivered_replay: int = 0
    gaps_repaired: int = 0
    truncations: int = 0
    resets: int = 0
    """Subscriptions told their position no longer exists (a re-created store, a lost log)."""
    """Subscriptions told that history they asked for is gone."""
    demoted: int = 0
    promoted: int = 0


class Feed:
    """One store's live feed on this pod."""

    __slots__ = (
        "contents",
        "epoch",
        "index",
        "keys",
        "last",
        "live",
        "patterns",
        "ready",
        "refs",
        "seen",
        "store",
        "subs",
    )

    def __init__(self, store: str) -> None:
        self.store = store
        self.keys = StoreKeys(store)
        self.seen = 0
        self.epoch = ""
        """The store's epoch ``seen`` belongs to."""
        self.last: LoggedEvent | None = None
        """The event at ``seen``, when the feed delivered it (``Fanout._verify``)."""
        self.subs: set[LiveSubscription] = set()
        """Every subscription of the feed, live or catching up."""
        self.patterns: dict[str, int] = {}
        """Complex patterns of ``subs``: how many hold each (``MAX_COMPLEX_PATTERNS``)."""
        self.index: FilterIndex[LiveSubscription] = FilterIndex()
        self.live: set[LiveSubscription] = set()
        self.contents = 0
        """How many of ``live`` have content conditions (none: the fan-out skips the verdicts)."""
        self.refs = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class LiveSubscription:
    """One client subscription. Live (in its feed's index) or catching up (a task of its own
    reads the log), never both. ``cursor`` is the last globalPosition handled for it."""

    __slots__ = (
        "_catch_up",
        "_demoted",
        "_fanout",
        "_last_marker",
        "_last_marker_at",
        "_quiet_truncation",
        "_replaying",
        "context",
        "cursor",
        "feed",
        "filter",
        "id",
        "sink",
        "start_time",
        "state",
    )

    def __init__(
        self,
        fanout: Fanout,
        feed: Feed,
        sub_id: str,
        flt: Filter,
        sink: Sink,
        cursor: int,
        replaying: bool,
        context: Any = None,
        *,
        from_earliest: bool = False,
        start_time: float | None = None,
    ) -> None:
        self._fanout = fanout
        self.feed = feed
        self.id = sub_id
        self.filter = flt
        self.sink = sink
        self.cursor = cursor
        self.context = context
        self.state: Literal["catching-up", "live", "closed"] = "catching-up"
        self._replaying = replaying  # send caughtUp when first live
        self._quiet_truncation = from_earliest
        """``earliest`` asks for what is kept: history gone before it is no news to report."""
        self._demoted = False
        self._last_marker = cursor
        self._last_marker_at = time.monotonic()
        self._catch_up: asyncio.Task[None] | None = None
        self.start_time = start_time
        """A start from a time still ahead (epoch seconds): the events read are passed over until
        one created at or after it; the subscription goes live only once the time is past (by
        ``CLOCK_SKEW``: pods' clocks stamp the events), never delivering one created before."""
        feed.subs.add(self)
        for pattern in flt.complex_patterns:
            feed.patterns[pattern] = feed.patterns.get(pattern, 0) + 1

    @property
    def live(self) -> bool:
        return self.state == "live"

    # -- called by the fan-out, synchronously, in the listener task ----------------------------

    def refused(self, position: int) -> None:
        """Its sink had no room for the live event at ``position``: demote to catching up
        (everything before ``position`` was handled). ``Fanout._deliver`` offers the events."""
        self.cursor = max(self.cursor, position - 1)
        self._demote()

    def checkpoint(self, position: int, now: float, interval: float) -> None:
        if (
            position > self.cursor
            and position > self._last_marker
            and (now - self._last_marker_at >= interval)
            and self.sink.send_marker(self, "checkpoint", position)
        ):
            self.cursor = self._last_marker = position
            self._last_marker_at = now

    def _demote(self) -> None:
        self._fanout._unlive(self)
        self.state = "catching-up"
        self._demoted = True
        self._fanout.stats.demoted += 1
        self._start_catch_up()

    # -- catching up ------------------------------------------------------------------------

    def _start_catch_up(self) -> None:
        self._catch_up = asyncio.get_running_loop().create_task(
            self._run_catch_up(), name=f"catch-up {self.feed.store}/{self.id}"
        )

    async def _run_catch_up(self) -> None:
        """Read the log after ``cursor`` at the sink's pace, then switch to live (docs)."""
        feed, fanout = self.feed, self._fanout
        pressed = False  # the sink was refused under the budget's pressure: small pages
        try:
            while self.state == "catching-up":
                await self.sink.wait_room()
                if self.cursor >= feed.seen:
                    if self.start_time is not None and time.time() < self.start_time + SKEW:
                        # A start still ahead: wait for events (the feed sees them) or the time.
                        await asyncio.sleep(FUTURE_START_RECHECK)
                        continue
                    self.start_time = None
                    self._go_live()
                    return
                if fanout.budget.over:
                    # The pod's queues are past their budget: read nothing more until the
                    # biggest are cut or drained (docs/streaming.md, "One budget per pod").
                    await asyncio.sleep(OVER_BUDGET_RECHECK)
                    continue
                page = await fanout.read_page(feed.store, self.cursor, small=pressed)
                gone = page.truncated_before
                if gone is not None and gone > self.cursor + 1:
                    self.truncated(gone)
                self._quiet_truncation = False
                if not page.events:
                    # The log holds nothing past cursor although the feed saw more: the store's
                    # history changed under us. The fan-out restarts every subscription of the
                    # feed (this one in a new task) or, if nothing changed after all, this one
                    # follows the feed from here.
                    if await fanout.verify(feed):
                        return
                    self.cursor = feed.seen
                    continue
                budget = fanout.budget
                budget.hold(page)
                try:
                    pressed = await self._send_page(page.events)
                finally:
                    budget.release(page)
                if pressed:
                    # Its queue is big and the pod's is near its budget: the page is let go
                    # (read again, small, from the cursor) and the client gets time to drain.
                    await asyncio.sleep(OVER_BUDGET_RECHECK)
        except asyncio.CancelledError:
            raise
        except BrokerError as exc:
            # Redis went away mid catch-up: retry from cursor after a pause. Nothing is lost.
            log.warning("catch-up paused", extra={"store": feed.store, "error": exc.message})
            await asyncio.sleep(0.5)
            if self.state == "catching-up":
                self._start_catch_up()

    async def _send_page(self, page: list[LoggedEvent]) -> bool:
        """Send what matches; True if it stopped early, the sink refused under the budget's
        pressure (the caller lets the page go)."""
        flt, sink = self.filter, self.sink
        pressed = False
        sent = last_sent = 0
        i = 0
        if self.start_time is not None:
            self.cursor, reached = codec.passed_before(page, self.cursor, self.start_time)
            if reached:
                self.start_time = None
        while i < len(page):
            event = page[i]
            if (
                event.global_position > self.cursor
                and flt.matches(event.stream_id, event.type)
                and (not flt.contents or flt.accepts(codec.event_of(event.json)))
            ):
                if not sink.send_event(self, event, None):
                    if self._fanout.budget.pressure:
                        pressed = True  # stalled readers hold no pages while they wait
                        break
                    await sink.wait_room()
                    if self.state != "catching-up":
                        return False
                    continue
                sent += 1
                last_sent = event.global_position
            self.cursor = max(self.cursor, event.global_position)
            i += 1
        self._fanout.stats.delivered_replay += sent
        now = time.monotonic()
        if sent:
            # The client's cursor is the last event sent: a checkpoint tells it of a position
            # past that one, never that one again (a page let go under pressure is read anew).
            self._last_marker_at = now
            self._last_marker = max(self._last_marker, last_sent)
        elif (
            now - self._last_marker_at >= REPLAY_CHECKPOINT_INTERVAL
            and (self.cursor > self._last_marker)
            and sink.send_marker(self, "checkpoint", self.cursor)
        ):
            self._last_marker, self._last_marker_at = self.cursor, now
        return pressed

    def truncated(self, earliest: int) -> None:
        """History after the cursor and before ``earliest`` is gone: say so (docs), go on."""
        if not self._quiet_truncation:
            self.sink.send_truncated(self, self.cursor, earliest)
        self._fanout.stats.truncations += 1
        self.cursor = max(self.cursor, earliest - 1)

    async def restart(self, reason: Reset, epoch: str, head: int) -> None:
        """The position this subscription is at no longer exists: say so, then serve it again
        from the store's earliest event (a replay, then live)."""
        if self.state == "closed":
            return
        self.sink.send_reset(self, reason, epoch, head)
        if self.state == "live":
            self._fanout._unlive(self)
        task, self._catch_up = self._catch_up, None
        if task is not None and task is not asyncio.current_task():
            await cancel_and_wait([task])
        if self.state == "closed":
            return
        self.state = "catching-up"
        self.cursor = self._last_marker = 0
        self._replaying = self._quiet_truncation = True
        self._fanout.stats.resets += 1
        self._start_catch_up()

    def _go_live(self) -> None:
        """The switch: no await between the check in the caller and this registration."""
        self.state = "live"
        self._fanout._make_live(self)
        if self._replaying:
            self._replaying = False
            position = max(self.cursor, self.feed.seen)
            if self.sink.send_marker(self, "caughtUp", position):
                self.cursor = self._last_marker = position
        elif self._demoted:
            self._demoted = False
            self._fanout.stats.promoted += 1

    async def close(self) -> None:
        """Stop delivering and release the feed. Safe to call twice."""
        if self.state == "closed":
            return
        if self.state == "live":
            self._fanout._unlive(self)
        self.state = "closed"
        self.feed.subs.discard(self)
        patterns = self.feed.patterns
        for pattern in self.filter.complex_patterns:
            if patterns[pattern] == 1:
                del patterns[pattern]
            else:
                patterns[pattern] -= 1
        task, self._catch_up = self._catch_up, None
        if task is not None and task is not asyncio.current_task():
            await cancel_and_wait([task])
        self._fanout._release(self.feed)

    async def __aenter__(self) -> LiveSubscription:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


class Fanout:
    """All live fan-out of one pod. Start with ``await fanout.start()``, stop with ``close()``."""

    def __init__(
        self,
        redis: Any,
        log: EventLog,
        *,
        poll_interval: float = 1.0,
        checkpoint_interval: float = 5.0,
        on_latency: Callable[[float, int], None] | None = None,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        self._redis = redis
        self.budget = QueueBudget(max_queued_bytes)
        """Everything this pod has queued to clients (sinks charge it; catch-ups hold pages)."""
        self._log = log
        self._pages = PageReader(log)
        self._small_pages = PageReader(log, size=SMALL_PAGE, budget=SMALL_PAGE_CACHE_CHARS)
        """Used for catch-ups while the queued-bytes budget is under pressure: a catch-up holds
        its page while its client drains, so then it holds a small one."""
        self._feeds: dict[str, Feed] = {}
        self._head_reads: dict[str, asyncio.Future[tuple[int, str]]] = {}
        self._checkpoint_interval = checkpoint_interval
        self._next_checkpoint = 0.0
        self._on_latency = on_latency
        self._listener = Listener(redis, self, tick_interval=poll_interval, name="fanout listener")
        self._verified_at = 0
        """The listener's reconnects when the feeds' histories were last verified."""
        self.stats = FanoutStats()

    @property
    def healthy(self) -> bool:
        """True while the pub/sub listener is connected."""
        return self._listener.healthy

    @property
    def pubsub_reconnects(self) -> int:
        return self._listener.reconnects

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._next_checkpoint = time.monotonic() + self._checkpoint_interval
        await self._listener.start()

    async def close(self) -> None:
        """Stop listening and close every subscription, live or catching up (its task with it:
        a catch-up left running would retry against a closed connection forever)."""
        await self._listener.close()
        for feed in list(self._feeds.values()):
            for sub in list(feed.subs):
                await sub.close()

    # -- subscribing ------------------------------------------------------------------------

    async def subscribe(
        self,
        store: str,
        flt: Filter,
        sink: Sink,
        *,
        sub_id: str,
        position: StartPosition = "latest",
        epoch: str | None = None,
        context: Any = None,
    ) -> Subscribed:
        """A new subscription. It starts delivering after ``position`` (``latest``: the head at
        subscribe time, ``earliest``: 0). A position the store's history does not hold (``epoch``
        is not the store's, or the position is beyond the head) starts from earliest instead,
        and ``reset`` says why. Raises StoreNotFound or Unavailable."""
        feed = await self._acquire(store)
        try:
            head, current = await self._shared_head(store)
            if current != feed.epoch:
                await self._reset_feed(feed, "store-recreated")
            reset: Reset | None = None
            if epoch is not None and epoch != current:
                reset = "store-recreated"
            elif isinstance(position, int) and position > head:
                # Decided against a head read after this request arrived (a shared read may
                # predate it): a position an append in flight just made valid is not ahead.
                head, current = await self._log.head_and_epoch(store)
                if position > head:
                    reset = "position-ahead"
        except BaseException:
            self._release(feed)
            raise
        if reset is not None:
            position = "earliest"
            self.stats.resets += 1
        start_time = None
        if isinstance(position, TimeStart):  # (a reset made it "earliest" above)
            if position.moment.timestamp() > time.time():
                start_time = position.moment.timestamp()  # (still ahead: passed over till then)
            try:
                position = await self._log.first_at(store, position.moment) - 1
            except BaseException:
                self._release(feed)
                raise
        if position == "latest":
            cursor, replaying = head, False
        else:
            cursor, replaying = (0 if position == "earliest" else position), True
        fresh = [p for p in flt.complex_patterns if p not in feed.patterns]
        if fresh and len(feed.patterns) + len(fresh) > MAX_COMPLEX_PATTERNS:
            # (checked with no await before the subscription is made: none can pass it meanwhile)
            self._release(feed)
            raise TooManyPatterns(
                f"the subscriptions of store '{store}' on this pod hold {len(feed.patterns)} "
                f"distinct patterns with a '*' inside or several '*' (at most "
                f"{MAX_COMPLEX_PATTERNS}); use ones already in use, or 'prefix.*' / '*.suffix'",
                {"limit": MAX_COMPLEX_PATTERNS},
            )
        sub = LiveSubscription(
            self,
            feed,
            sub_id,
            flt,
            sink,
            cursor,
            replaying,
            context,
            from_earliest=position == "earliest",
            start_time=start_time,
        )
        if cursor >= feed.seen and not replaying:
            sub._go_live()
        else:
            sub._start_catch_up()
        return Subscribed(sub, head, current, reset)

    async def _shared_head(self, store: str) -> tuple[int, str]:
        """The store's head and epoch; subscribes arriving together (a reconnect storm) share
        one read. A shared read may predate a subscribe by a moment: that only adds events,
        never loses one, because delivery starts after the head it returns."""
        pending = self._head_reads.get(store)
        if pending is None:
            pending = asyncio.ensure_future(self._log.head_and_epoch(store))
            self._head_reads[store] = pending
            pending.add_done_callback(lambda done: self._head_read_done(store, done))
        return await asyncio.shield(pending)

    def _head_read_done(self, store: str, done: asyncio.Future[tuple[int, str]]) -> None:
        self._head_reads.pop(store, None)
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every waiter was cancelled

    async def read_page(self, store: str, after: int, *, small: bool = False) -> Slice:
        pages = self._small_pages if small or self.budget.pressure else self._pages
        return await pages.read(store, after)

    async def _acquire(self, store: str) -> Feed:
        feed = self._feeds.get(store)
        if feed is None:
            feed = self._feeds[store] = Feed(store)
            feed.refs += 1
            try:
                await self._listener.subscribe(feed.keys.channel)
                feed.seen, feed.epoch = await self._log.head_and_epoch(store)
            except BaseException as exc:
                feed.refs -= 1
                self._feeds.pop(store, None)
                if isinstance(exc, asyncio.CancelledError):
                    feed.ready.cancel()
                else:
                    feed.ready.set_exception(exc)
                    feed.ready.exception()
                raise
            feed.ready.set_result(None)
            return feed
        feed.refs += 1
        try:
            await asyncio.shield(feed.ready)
        except BaseException:
            feed.refs -= 1
            raise
        return feed

    def _release(self, feed: Feed) -> None:
        feed.refs -= 1
        # The listener unsubscribes idle feeds on its next tick.

    def _make_live(self, sub: LiveSubscription) -> None:
        feed = sub.feed
        feed.index.add(sub, sub.filter)
        if sub not in feed.live and sub.filter.content_key:
            feed.contents += 1
        feed.live.add(sub)

    def _unlive(self, sub: LiveSubscription) -> None:
        feed = sub.feed
        feed.index.remove(sub)
        if sub in feed.live and sub.filter.content_key:
            feed.contents -= 1
        feed.live.discard(sub)

    # -- what the listener hands over (in its task) ------------------------------------------

    async def tick(self) -> None:
        """Every poll interval: repair feeds from the log, drop idle ones, send checkpoints.
        After the pub/sub connection was lost (Redis restarted, failed over...), first check
        that each feed's history is still the store's."""
        reconnects = self._listener.reconnects
        if reconnects != self._verified_at:
            await self._verify_histories()
            self._verified_at = reconnects
        await self._poll()
        now = time.monotonic()
        if now >= self._next_checkpoint:
            self._checkpoints(now)
            self._next_checkpoint = now + self._checkpoint_interval

    async def announced(self, channel: str, data: str) -> None:
        store = channel[channel.index("{") + 1 : channel.rindex("}")]
        feed = self._feeds.get(store)
        if feed is None or not feed.ready.done():
            return
        appended_at, epoch, events = codec.decode_announcement(data)
        if epoch != feed.epoch:
            await self._reset_feed(feed, "store-recreated")
            return  # the reset replays these events from the log
        if events[-1].global_position <= feed.seen:
            return
        if events[0].global_position > feed.seen + 1:
            await self._repair(feed, events[0].global_position - 1)
        fresh = [e for e in events if e.global_position > feed.seen]
        if fresh:
            self._deliver(feed, fresh)
            if self._on_latency is not None:
                self._on_latency(time.time() - appended_at, len(fresh))

    async def _repair(self, feed: Feed, until: int | None) -> None:
        """Deliver what the log holds after ``feed.seen`` (up to ``until``)."""
        while until is None or feed.seen < until:
            piece = await self._pages.read(feed.store, feed.seen)
            if piece.truncated_before is not None and piece.truncated_before > feed.seen + 1:
                for sub in list(feed.live):  # far behind (a long outage): what is gone is gone
                    sub.truncated(piece.truncated_before)
            page = piece.events
            if until is not None:
                page = [e for e in page if e.global_position <= until]
            if not page:
                return
            self.stats.gaps_repaired += len(page)
            self._deliver(feed, page)

    async def _poll(self) -> None:
        """Compare every feed with its store's head in one round trip; repair what is behind;
        drop feeds nobody uses."""
        for store, feed in list(self._feeds.items()):
            if feed.refs <= 0 and feed.ready.done():
                del self._feeds[store]
                self._pages.forget(store)
                self._small_pages.forget(store)
                await self._listener.unsubscribe(feed.keys.channel)
        feeds = [f for f in self._feeds.values() if f.ready.done()]
        if not feeds:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for feed in feeds:
                pipe.hmget(feed.keys.meta, "head", "uid")
            states = await call(pipe.execute())
        for feed, (head, epoch) in zip(feeds, states, strict=True):
            if epoch is None:
                continue  # deleted: a store of that name may come back (a new epoch)
            if epoch != feed.epoch:
                await self._reset_feed(feed, "store-recreated")
            elif int(head or 0) < feed.seen:
                await self._reset_feed(feed, "position-ahead")
            elif int(head or 0) > feed.seen:
                await self._repair(feed, int(head or 0))

    async def _verify_histories(self) -> None:
        """Reset each feed whose last delivered event is no longer the store's event at that
        position: Redis lost its last writes (a restart from an older snapshot, a failover to a
        replica behind) and new appends took those positions again. ``_poll`` sees a head below
        the feed's; this sees the writers that got past it before the first poll, whose events
        the feed would otherwise take for ones it delivered, and skip."""
        for feed in list(self._feeds.values()):
            last = feed.last
            if last is None or not feed.ready.done():
                continue
            now = await self._log.after(feed.store, feed.seen - 1, 1)
            there = now.events[0] if now.events else None
            if there is None or there.global_position != feed.seen:
                continue  # gone or not there yet: _poll tells (a head below the feed's)
            if codec.event_id_of(there.json) != codec.event_id_of(last.json):
                await self._reset_feed(feed, "position-ahead")

    async def verify(self, feed: Feed) -> bool:
        """Reset the feed if the store's history is not the one it follows; True if it did."""
        head, epoch = await self._log.head_and_epoch(feed.store)
        if epoch != feed.epoch:
            await self._reset_feed(feed, "store-recreated")
            return True
        if head < feed.seen:
            await self._reset_feed(feed, "position-ahead")
            return True
        return False

    async def _reset_feed(self, feed: Feed, reason: Reset) -> None:
        """The store's history is not the one the feed followed (re-created, or Redis lost its
        last writes): follow the new one, and restart every subscription from its earliest."""
        head, epoch = await self._log.head_and_epoch(feed.store)
        log.warning(
            "store history changed under its subscribers; they start again from earliest",
            extra={"store": feed.store, "reason": reason, "seen": feed.seen, "head": head},
        )
        feed.seen, feed.epoch, feed.last = head, epoch, None
        self._pages.forget(feed.store)
        self._small_pages.forget(feed.store)
        for sub in list(feed.subs):
            await sub.restart(reason, epoch, head)

    def _deliver(self, feed: Feed, events: list[LoggedEvent]) -> None:
        """Hand events (in order, all > seen) to the matching live subscriptions. Never awaits:
        a full sink demotes its subscription instead.

        The inner loop runs once per delivery (1,000 subscribers: 1,000 times an event), so it
        does only what each delivery needs: a subscription gets an event only past its
        cursor, its cursor moves on when the sink took it, and a refusal demotes it. Content
        verdicts are made (and the event decoded) only if a live subscription of the feed has
        content conditions; the counters are updated once per call."""
        index = feed.index
        contents = feed.contents
        delivered = 0
        for event in events:
            position = event.global_position
            if index:
                decoded: dict[str, Any] = {}  # the event, decoded once for the content filters
                verdicts: dict[str, bool] | None = None  # content key -> accepted, once per event
                shared: dict[Any, Any] = {}  # what sinks build once per event (Sink.send_event)
                for sub in index.match(event.stream_id, event.type):
                    if contents and (key := sub.filter.content_key):
                        if verdicts is None:
                            verdicts = {}
                            decoded = codec.event_of(event.json)
                        accepted = verdicts.get(key)
                        if accepted is None:
                            accepted = verdicts[key] = sub.filter.accepts(decoded)
                        if not accepted:
                            continue
                    if position > sub.cursor:
                        if not sub.sink.send_event(sub, event, shared):
                            sub.refused(position)
                            continue
                        sub.cursor = position
                    delivered += 1
            feed.seen = position
        if events:
            feed.last = events[-1]
        self.stats.delivered_live += delivered

    def _checkpoints(self, now: float) -> None:
        for feed in self._feeds.values():
            for sub in list(feed.live):
                sub.checkpoint(feed.seen, now, self._checkpoint_interval)

    def heads(self) -> dict[str, int]:
        """Last position seen per store with live subscribers (for metrics)."""
        return {store: feed.seen for store, feed in self._feeds.items()}
