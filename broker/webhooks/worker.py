"""Delivering one subscription while this replica holds its lease (``Worker``).

Events are read from the store's log after the cursor (``tail.LogTail``) into the ``Window``; at
most ``max_in_flight`` requests are in flight, never two of one stream, so each stream's events
arrive in order. The requests are made by ``max_in_flight`` lanes (connection workers sharing the
subscription's keep-alive pool, ``delivery.Target``), not a task per delivery. A failed attempt
is recorded and retried after ``retry.retry_delay``; after the last attempt the event becomes a
dead letter. Progress (``lastProcessedEventGlobalPosition``) is saved per batch of finished
deliveries (``_save``, when ``_save_due``), with the positions finished ahead of it; a finished
delivery holds its slot and its stream until saved, so a crash repeats at most ``max_in_flight``
events, those in flight or finished since the last save, at most one per stream (never an older
event of a stream after a newer one). Events read past without a delivery (they do not match, or
precede a start time) move the saved progress too, nothing unfinished below them (``_passed_due``:
once per loop turn, a save at most every ``SAVE_DELAY``, so within about a poll interval when
idle), so ``lag`` tells how far behind the subscription really is. Every write is fenced by the
lease (``ProgressStore``): ``lost`` or ``gone`` stops the worker at once.

Size: ~520 lines: the window, the lanes, retries and the batched progress save share the
worker's state (slots held until saved); split apart they would pass that state around.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass

from .. import codec
from ..aio import Doorbell, cancel_and_wait
from ..log import EventLog
from ..types import LoggedEvent
from .delivery import Attempt, Envelope, Sender, Target
from .options import DispatcherOptions, DispatchObserver
from .progress import ProgressStore
from .records import WebhookSubscription
from .retry import max_attempts, retry_delay
from .signing import secret_key
from .tail import LogTail
from .window import Item, Window

log = logging.getLogger("deltagate.dispatcher")

SAVE_DELAY = 0.02
"""Seconds a save of progress may wait for more finished deliveries when none is in flight."""
HOLD_DELAY = 0.002
"""Seconds a save may wait for the requests in flight when a finished delivery holds back its
stream's next event: a save then records a wave of deliveries, not each as it comes."""

Ref = tuple[str, str]
"""(store, subscription id)."""


@dataclass(frozen=True, slots=True)
class Shared:
    """What every worker of one replica uses."""

    progress: ProgressStore
    log: EventLog
    sender: Sender
    options: DispatcherOptions
    observer: DispatchObserver
    rng: random.Random
    replica: str
    """The lease holder's name: the fence of every write."""


class Stopped(Exception):
    """The worker must stop: ``lost`` (another replica holds the lease), ``gone`` (deleted) or
    ``restart`` (its position was moved under it: start again from the saved one)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Worker:
    """Delivers one subscription. Stopped gently with ``stop()`` (in-flight requests finish,
    progress is saved) or at once by cancelling ``task`` (lease lost, subscription deleted).
    ``task`` returns ``stopped``, ``lost``, ``gone`` or ``restart``."""

    def __init__(self, shared: Shared, ref: Ref, valid_until: float) -> None:
        self.s = shared
        self.ref = ref
        self.store, self.id = ref
        self.valid_until = valid_until
        """Monotonic time until which the lease is known to be ours."""
        self.position = 0
        """Saved lastProcessedEventGlobalPosition."""
        self.rev = -1
        self.stopping = False
        self._reload = False
        self._loop = asyncio.get_running_loop()
        self._wake = Doorbell(self._loop)
        self._handed: deque[Item] = deque()
        """Items handed to the lanes, not yet taken (at most ``max_in_flight``)."""
        self._idle: deque[asyncio.Future[Item]] = deque()
        """Lanes waiting for an item: each is handed the next one directly (``_launch``). Not an
        ``asyncio.Queue``: its ``get`` asks for the running loop each time a lane waits, which on
        Python 3.11 is a ``getpid`` system call (CPython gh-100363), about one per delivery."""
        self._lanes: list[asyncio.Task[None]] = []
        self._flying = 0
        """Items handed to the lanes whose outcome is not taken yet."""
        self._sleeping_until: float | None = None
        """While the loop waits for ``_wake``: when its timer wakes it (monotonic)."""
        self._outcomes: list[tuple[Item, Attempt]] = []
        self._unsaved = 0
        """Deliveries finished since progress was last saved (they count against the slots)."""
        self._flush_at = max(1, shared.options.max_in_flight // 2)
        """Progress is saved once this many deliveries finished (``_save_due``)."""
        self._save_at = 0.0
        """When a save may follow the last one without a delivery to record (monotonic)."""
        self._unsaved_since: float | None = None
        """When the first delivery the next save records finished (monotonic)."""
        self._window = Window()
        self._record_start = False
        """The record still holds a ``startTime``: the first save after the tail read an event
        created at or after it drops it."""
        self._tail = LogTail(
            shared.log,
            self.store,
            self._window,
            size=shared.options.window,
            poll_interval=shared.options.poll_interval,
            on_gone=self._history_gone,
            streams=shared.options.max_in_flight,
        )
        self._epoch: str | None = None
        self._next_check = 0.0
        self._redrive_pending = False
        self._redrive: Item | None = None
        self._new_done: list[int] = []
        self._finished: list[str] = []
        self._redriven: list[str] = []
        self._succeeded = False
        self._sub: WebhookSubscription | None = None
        self._target: Target | None = None
        self._envelope = Envelope({})
        self.task = self._loop.create_task(self._run(), name=f"webhook {self.store}/{self.id}")

    # -- controls ---------------------------------------------------------------------------

    def poke(self) -> None:
        """New events may be in the log."""
        self._tail.poke()
        self._wake.set()

    def announce(self, events: list[LoggedEvent], epoch: str) -> None:
        """Events just appended (from the store's live channel) to the store of ``epoch``.
        Those that directly follow the cursor are taken as they are, saving a read of the log;
        anything else (a gap, a full window, a subscription still loading, another epoch) means:
        read the log."""
        if self._sub is None:
            self.poke()
            return
        if not self._tail.take(events, self._sub.config.filter, epoch):
            self._tail.poke()
            self._wake.set()
        elif self._sleeping_until is not None and self._may_start():
            # The loop waits with nothing else to do: hand the events to the lanes from here.
            self._start()
            self._nudge()
        else:
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
            await self._check_history()  # first: it may give an old record its epoch
            await self._load()
            loop = asyncio.get_running_loop()
            self._lanes = [
                loop.create_task(self._lane(), name=f"webhook lane {self.store}/{self.id}")
                for _ in range(self.s.options.max_in_flight)
            ]
            while not self.stopping:
                self._wake.clear()
                if self._reload:
                    await self._reload_record()
                await self._finish()
                if self._may_start() and time.monotonic() >= self._next_check:
                    if await self._check_history():
                        await self._reload_record()
                if self._may_start():
                    await self._fill()
                    if self._tail.rewound:
                        if not await self._check_history():
                            # The saved progress is in the history, what was read past it is
                            # not (the store lost writes): start again from the saved position.
                            log.warning(
                                "webhook subscription read past the store's head: restarting "
                                "from its saved progress",
                                extra={"store": self.store, "subscription": self.id},
                            )
                            raise Stopped("restart")
                        await self._reload_record()
                    await self._next_redrive()
                    self._start()
                if self._save_due() or self._passed_due():
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
        except Stopped as stop:
            return stop.reason
        finally:
            await cancel_and_wait(self._lanes)
            if self._target is not None:
                await self._target.close()

    async def _load(self) -> None:
        loaded = await self.s.progress.load(self.store, self.id)
        if loaded is None:
            raise Stopped("gone")
        sub, state = loaded
        self._apply(sub)
        self.position = self._tail.cursor = sub.position
        self._epoch = self._tail.epoch = sub.epoch
        self._tail.start_time = sub.start_time
        self._record_start = sub.start_time is not None
        self._window.resume(state.attempts, state.done)
        self._redrive_pending = state.redrive > 0

    async def _check_history(self) -> bool:
        """Auto-pause (never skip) when the progress is not a position of the store's history as
        it is now: the store was created again, or lost writes (``wh_rewind``). Checked when the
        worker starts, then every poll interval while it delivers."""
        self._next_check = time.monotonic() + self.s.options.poll_interval
        status, details = await self.s.progress.check_history(self.store, self.id, self.s.replica)
        self._check(status)
        if status != "paused":
            return False
        if self._sub is None or self.active:
            log.warning(
                "webhook subscription auto-paused: its progress is not in the store's history",
                extra={"store": self.store, "subscription": self.id, "details": details},
            )
        return True

    def _apply(self, sub: WebhookSubscription) -> None:
        was_active = self.active
        self._sub = sub
        self.rev = sub.rev
        key = secret_key(sub.secret)
        if self._target is None:
            self._target = Target(self.s.sender, sub.config, key, self.s.options.max_in_flight)
        else:
            self._target.update(sub.config, key)
        self._envelope = Envelope(
            {"eventStoreName": self.store, "eventStoreId": sub.store_id, "subscriptionId": self.id}
        )
        if self.active and not was_active:
            # Resumed: whatever waited for a retry is due now.
            self._window.release_waiting()
            if self._redrive is not None and self._redrive.state == "waiting":
                self._redrive.state = "pending"

    async def _reload_record(self) -> None:
        self._reload = False
        loaded = await self.s.progress.load(self.store, self.id)
        if loaded is None:
            raise Stopped("gone")
        sub, state = loaded
        if sub.position != self.position or sub.epoch != self._epoch:
            # Resumed from another position (the API deleted the lease too): start afresh.
            raise Stopped("restart")
        self._apply(sub)
        self._redrive_pending = self._redrive_pending or state.redrive > 0

    def _may_start(self) -> bool:
        return self.active and time.monotonic() < self.valid_until

    # -- reading ----------------------------------------------------------------------------

    async def _fill(self) -> None:
        assert self._sub is not None
        await self._tail.fill(self._sub.config.filter)

    def _history_gone(self, first: int, last: int) -> None:
        log.warning(
            "webhook subscription skips events deleted by retention before their delivery",
            extra={"store": self.store, "subscription": self.id, "first": first, "last": last},
        )
        self.s.observer.history_gone(last - first + 1)

    async def _next_redrive(self) -> None:
        """Take the oldest dead letter queued for redelivery, if none is being delivered."""
        if self._redrive is not None or not self._redrive_pending or self._redriven:
            return  # (one whose delivery is not saved yet would still be at the head)
        head = await self.s.progress.next_redrive(self.store, self.id)
        if head is None:
            self._redrive_pending = False
            return
        event_id, position, _ = head
        page = await self.s.log.read_after(self.store, position - 1, 1)
        if (
            not page
            or page[0].global_position != position
            or codec.loads(page[0].json)["eventId"] != event_id  # a re-created store's event
        ):
            self._redriven.append(event_id)  # the event left the log: drop its dead letter
            self._redrive_pending = False  # look again after saving
            return
        self._redrive = Item(page[0], event_id)

    # -- sending ----------------------------------------------------------------------------

    def _start(self) -> None:
        now = time.monotonic()
        self._window.due(now)
        # Finished but unsaved deliveries hold their slot until saved: a crash then repeats at
        # most max_in_flight events, those in flight or finished since the last save.
        slots = self.s.options.max_in_flight - self._flying - self._unsaved
        redrive = self._redrive
        if redrive is not None and redrive.state == "waiting" and redrive.not_before <= now:
            redrive.state = "pending"
        if redrive is not None and redrive.state == "pending" and slots > 0:
            self._launch(redrive)
            slots -= 1
        while slots > 0 and self._window.has_ready:
            self._launch(self._window.pop_ready())
            slots -= 1

    def _launch(self, item: Item) -> None:
        self._hand(item)
        idle = self._idle
        while idle:
            lane = idle.popleft()
            if not lane.done():  # (a lane cancelled while it waited is skipped)
                lane.set_result(item)
                return
        self._handed.append(item)

    def _hand(self, item: Item) -> None:
        """``item`` goes to a lane: it is flying from now on."""
        item.state = "flying"
        if not item.body:
            item.body = self._envelope.body(item.json)
        self._flying += 1

    async def _lane(self) -> None:
        """One of ``max_in_flight`` connection workers: sends what it is handed, one at a time
        (no task per delivery). A success is recorded here and the lane goes straight on with
        the next ready event while a slot is free; anything else goes back to the loop."""
        assert self._target is not None
        sender, target, handed = self.s.sender, self._target, self._handed
        while True:
            item: Item | None
            if handed:
                item = handed.popleft()
            else:
                waiter: asyncio.Future[Item] = self._loop.create_future()
                self._idle.append(waiter)
                item = await waiter
            while item is not None:
                outcome = await sender.deliver(target, item.event_id, item.body)
                item = self._after(item, outcome)

    def _after(self, item: Item, outcome: Attempt) -> Item | None:
        """A lane's outcome: the next item for that lane, if it may go on."""
        if outcome.result == "success" and item is not self._redrive:
            # _finish's success path, without waking the loop for it.
            self._flying -= 1
            self.s.observer.attempt(outcome.result, outcome.seconds)
            self._succeeded = True
            self._complete(item, dead=False)
            following = None
            if (
                not self.stopping
                and not self._reload
                and self._window.has_ready
                and self._flying + self._unsaved < self.s.options.max_in_flight
                and self._may_start()
            ):
                following = self._window.pop_ready()
                self._hand(following)
            if following is None or self._unsaved >= self._flush_at:
                self._nudge()
            return following
        outcomes = self._outcomes  # (the loop swaps the list when it takes them)
        outcomes.append((item, outcome))
        # Wake the loop once per batch: when every request handed out is answered (nothing
        # more will come), when nothing else is ready to send (this may free its stream's next
        # event), for a failure (to schedule a retry) or a redrive.
        if (
            len(outcomes) >= self._flying
            or not self._window.has_ready
            or outcome.result != "success"
            or item is self._redrive
        ):
            self._wake.set()
        return None

    # -- outcomes ---------------------------------------------------------------------------

    async def _finish(self) -> None:
        """Take the outcome of every finished request: progress, retry or dead letter."""
        outcomes, self._outcomes = self._outcomes, []
        self._flying -= len(outcomes)
        for item, outcome in outcomes:
            self.s.observer.attempt(outcome.result, outcome.seconds)
            if outcome.result == "success":
                self._succeeded = True
                self._complete(item, dead=False)
                continue
            item.attempts += 1
            # Every failed attempt is recorded (last error, failure streak, auto-pause), the
            # last one too; then the event waits for a retry or goes to the dead letters.
            status = await self.s.progress.failed(
                self.store,
                self.id,
                self.s.replica,
                event_id=item.event_id,
                position=None if item is self._redrive else item.position,
                attempts=item.attempts,
                error=outcome.error,
                auto_pause_ms=int(self.s.options.auto_pause_seconds * 1000),
            )
            self._check(status)
            if status == "paused":
                log.warning(
                    "webhook subscription auto-paused",
                    extra={"store": self.store, "subscription": self.id, "error": outcome.error},
                )
                self._reload = True
            assert self._sub is not None
            policy, schedule = self._sub.config.retry, self.s.options.retry_schedule
            if item.attempts >= max_attempts(policy, schedule):
                await self._dead_letter(item, outcome.error)
                continue
            self.s.observer.retry()
            not_before = time.monotonic() + retry_delay(policy, schedule, item.attempts, self.s.rng)
            if item is self._redrive:
                item.state = "waiting"
                item.not_before = not_before
            else:
                self._window.wait(item, not_before)

    async def _dead_letter(self, item: Item, error: str) -> None:
        self.s.observer.dead_letter()
        status, dropped = await self.s.progress.dead_letter(
            self.store,
            self.id,
            self.s.replica,
            event_id=item.event_id,
            position=item.position,
            stream_id=item.stream_id,
            event_json=item.json,
            attempts=item.attempts,
            error=error,
            limit=self.s.options.dead_letter_limit,
        )
        self._check(status)
        if dropped:
            log.warning(
                "dead-letter list full: dropped the oldest",
                extra={"store": self.store, "subscription": self.id, "dropped": dropped},
            )
        self._complete(item, dead=True)

    def _complete(self, item: Item, *, dead: bool) -> None:
        self._unsaved += 1
        if self._unsaved_since is None:
            self._unsaved_since = time.monotonic()
        if item is self._redrive:
            if not dead:
                self._redriven.append(item.event_id)
            self._redrive = None
            self._redrive_pending = True
            return
        if item.attempts and not dead:
            self._finished.append(item.event_id)
        self._new_done.append(item.position)
        self._window.complete(item)

    def _save_due(self) -> bool:
        """When a stream's next event waits behind its unsaved head (``Window.blocked``): once
        nothing is in flight, or ``HOLD_DELAY`` after the first unsaved delivery finished (a
        save then records the wave of requests in flight with it, not a few of them; a request
        that hangs holds back its own stream only). Otherwise: half the lanes' worth finished
        (the other half goes on while it is saved), or nothing is in flight and ``SAVE_DELAY``
        passed since the last save (a trickle of events: one write per few)."""
        if not self._unsaved:
            return False
        now = time.monotonic()
        if not self._flying:
            return self._unsaved >= self._flush_at or now >= self._save_at or self._window.blocked
        if self._window.blocked:
            return now >= self._hold_until()
        return self._unsaved >= self._flush_at

    def _passed_due(self) -> bool:
        """Nothing finished is unsaved, but the tail read past events that were not delivered
        (they did not match, or came before a start time) with nothing unfinished below them:
        the saved progress catches up with the cursor. Checked once per loop turn, not when a
        delivery finishes; the loop turns at least once per poll interval, and such a save
        follows the last save by ``SAVE_DELAY`` at least: never a save per event read. Not
        while the subscription does not deliver (paused, or auto-paused for a rewind: what was
        read may lie past the store's head now)."""
        return (
            not self._unsaved
            and self._tail.cursor > self.position
            and time.monotonic() >= self._save_at
            and self._may_start()
            and self._window.finished_below(self._tail.cursor) > self.position
        )

    def _hold_until(self) -> float:
        since = self._unsaved_since
        return (since if since is not None else time.monotonic()) + HOLD_DELAY

    async def _save(self) -> None:
        """Save progress when something finished (one round trip, fenced by the lease), when
        ``_save_due``: one write per batch, not per delivery. Finished deliveries hold their
        slot and their stream until saved (released here), so a crash repeats at most
        ``max_in_flight`` of them, at most one per stream."""
        position = self._window.finished_below(self._tail.cursor)
        held = self._window.take_held()
        started = self._record_start and self._tail.start_time is None
        if position == self.position and not (
            self._new_done or self._finished or self._redriven or self._succeeded or started
        ):
            self._unsaved = 0  # (a dead-lettered redrive: recorded when it was dead-lettered)
            self._unsaved_since = None
            self._window.release(held)
            return
        self._save_at = time.monotonic() + SAVE_DELAY
        self._unsaved_since = None
        # What this save records; lanes record more successes while it is on its way.
        done, self._new_done = self._new_done, []
        finished, self._finished = self._finished, []
        redriven, self._redriven = self._redriven, []
        succeeded, self._succeeded = self._succeeded, False
        unsaved = self._unsaved
        status = await self.s.progress.progress(
            self.store,
            self.id,
            self.s.replica,
            position=position,
            succeeded=succeeded,
            done=[p for p in done if p > position],
            finished=finished,
            redriven=redriven,
            started=started,
        )
        self._check(status)
        if started:
            self._record_start = False
        self._window.release(held)
        if redriven:
            self._redrive_pending = True
        self.position = max(self.position, position)
        self._unsaved -= unsaved

    def _check(self, status: str) -> None:
        if status in ("lost", "gone"):
            raise Stopped(status)
        if status == "recreated":
            # The store was created again: what this worker delivered is of the old history
            # and its write moved nothing. Let go; the next worker's first check auto-pauses.
            raise Stopped("restart")

    def _deadline(self) -> float | None:
        """When the loop has something to do next: None for now, else the earliest of its
        timers (monotonic; it may have passed already)."""
        if self.stopping or self._reload or self._outcomes:
            return None
        now = time.monotonic()
        if self._may_start() and (
            (self._window.has_ready and self._flying + self._unsaved < self.s.options.max_in_flight)
            or self._tail.may_read()
            or (self._redrive_pending and self._redrive is None and not self._redriven)
            or self._save_due()
        ):
            return None
        next_poll = self._tail.next_poll
        until = next_poll if next_poll > now else now + self.s.options.poll_interval
        retry_at = self._window.next_retry()
        if retry_at is not None:
            until = min(until, retry_at)
        if self._redrive is not None and self._redrive.state == "waiting":
            until = min(until, self._redrive.not_before)
        if self._unsaved and not self._flying:
            until = min(until, self._save_at)
        elif self._unsaved and self._window.blocked:
            # (requests in flight wake the loop as they finish; one that hangs does not)
            until = min(until, self._hold_until())
        return until

    async def _sleep(self) -> None:
        until = self._deadline()
        if until is None:
            return
        self._sleeping_until = until
        try:
            await self._wake.wait(max(0.0, until - time.monotonic()))
        finally:
            self._sleeping_until = None

    def _nudge(self) -> None:
        """Something changed: wake the loop, unless it sleeps and has nothing to do before it
        wakes anyway (a delivery finished or an event was handed to a lane in a trickle: one
        loop turn fewer per event, a fifth of the dispatcher's CPU at 500 events/s)."""
        sleeping_until = self._sleeping_until
        if sleeping_until is not None and not self._wake.is_set():
            until = self._deadline()
            if until is not None and until >= sleeping_until:
                return
        self._wake.set()
