"""Retention and archiving, in the background, on every pod (docs/lifecycle.md).

For each store, one pod at a time (the one holding the store's lifecycle lease) takes bounded
steps: copy the next events to the archive, in order, and move what may leave Redis out of it
(each page once it is archived, while the next are copied, and the rest after;
``scripts/trim.lua`` keeps the archive boundary atomically), then delete from the archive what
retention deletes everywhere. Every step is idempotent and may be cut short at any point (a pod
killed, Redis or the archive down): the next step, on any pod, goes on from what is recorded.

Bounds, per store (positions below a bound go):
- ``R`` (retention, everywhere): ``retentionPeriodDays`` (older events) and ``maxStreamSizeBytes``
  (the oldest events past that many bytes of JSON in the whole log);
- the hot bound (Redis only): ``hotRetention.maxEvents`` / ``maxAgeSeconds``, or the deployment's
  defaults. Without an archive, leaving Redis is leaving for good.
The newest event of a store always stays (and stays in Redis).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import codec
from .aio import cancel_and_wait, discard
from .archive import Archive
from .archiver import Archiver, Held, forget_pending, log_entries, summarize
from .errors import BrokerError
from .keys import STORE_REGISTRY, StoreKeys
from .reader import LogReader
from .redis import call, load_script
from .stores import Retention

log = logging.getLogger("deltagate.lifecycle")


@dataclass(frozen=True, slots=True)
class LifecycleOptions:
    interval: float = 1.0
    """Seconds between rounds over the stores when there was nothing to do."""
    lease_seconds: float = 15.0
    copy_batch: int = 10_000
    """Events copied to the archive per COPY (one transaction, one page) at most."""
    copy_bytes: int = 8 * 1024 * 1024
    """Bytes of event bodies a page holds, about: a store's first pages are sized by its
    average event, later ones by the page before (at most doubling), so a store of large events
    is copied in pages of fewer of them and the pod's memory stays bounded (three pages are
    under way at once)."""
    trim_batch: int = 10_000
    """Events moved out of Redis per call of ``scripts/trim.lua`` (a page the copy just
    archived goes in one call, whatever its size)."""
    step_events: int = 200_000
    """Events a step copies, and moves out of Redis, at most (in pages of the batches above),
    so that a store with a backlog does not hold the others up for long (about half a second
    on the 2-core bench host; the step also ends after a third of the lease). Each step starts
    its pages' pipeline anew and ends with its last page alone: with 50,000 the copy of
    200,000 events ran at 350-375k events/s on that host, with 200,000 at 374-399k."""
    delete_batch: int = 10_000
    """Archived events deleted by retention per step."""
    hot_events: int | None = None
    """Default ``hotRetention.maxEvents`` for stores that set none."""
    hot_seconds: float | None = None
    """Default ``hotRetention.maxAgeSeconds`` for stores that set none."""
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    )


@dataclass(slots=True)
class StoreState:
    """What the last step saw of a store (for metrics, read at scrape time)."""

    head: int = 0
    low: int = 1
    oldest: int = 1
    archived: int = 0
    archive_lag_seconds: float = 0.0


@dataclass(slots=True)
class LifecycleStats:
    archived: int = 0
    trimmed: int = 0
    deleted: int = 0
    """Events deleted everywhere by retention (from Redis without an archive, or the archive)."""
    errors: int = 0
    stores: dict[str, StoreState] = field(default_factory=dict)


class Lifecycle:
    """The background retention and archiving of one pod. ``start()``, then ``close()``."""

    def __init__(
        self,
        redis: Any,
        reader: LogReader,
        archive: Archive | None,
        options: LifecycleOptions | None = None,
    ) -> None:
        self._redis = redis
        self._reader = reader
        self._archive = archive
        self.options = options or LifecycleOptions()
        self._trim = load_script(redis, "trim")
        self._mark = load_script(redis, "lifecycle_mark")
        self._task: asyncio.Task[None] | None = None
        self.stats = LifecycleStats()
        self._archiver = (
            None
            if archive is None
            else Archiver(
                redis,
                archive,
                page=self.options.copy_batch,
                page_bytes=self.options.copy_bytes,
                step=self.options.step_events,
                seconds=self.options.lease_seconds / 3,
                on_copied=self._copied,
            )
        )

    def _copied(self, events: int) -> None:
        self.stats.archived += events

    @property
    def archiving(self) -> bool:
        return self._archive is not None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lifecycle")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])

    async def _run(self) -> None:
        while True:
            busy = False
            try:
                busy = await self.run_once()
            except BrokerError as exc:
                self.stats.errors += 1
                log.warning("retention and archiving paused", extra={"error": exc.message})
            except Exception:
                self.stats.errors += 1
                log.exception("retention and archiving failed; retrying")
            await asyncio.sleep(0 if busy else self.options.interval)

    async def run_once(self) -> bool:
        """One step for every store whose lease this pod gets; True if any had more to do."""
        names = list(await call(self._redis.smembers(STORE_REGISTRY)))
        random.shuffle(names)  # pods racing for leases spread over the stores
        busy = False
        if self._archive is not None:
            try:
                await forget_pending(self._redis, self._archive)
            except BrokerError as exc:
                self.stats.errors += 1
                log.warning(
                    "archived events of deleted stores wait for the archive",
                    extra={"error": exc.message},
                )
        for name in names:
            try:
                if await self._wanted(name) and await self._lease(name):
                    busy = await self.step(name) or busy
            except BrokerError as exc:
                self.stats.errors += 1
                log.warning(
                    "retention and archiving of a store paused",
                    extra={"store": name, "error": exc.message},
                )
        return busy

    async def _wanted(self, store: str) -> bool:
        """Whether the store may have work: always with an archive; else if something limits
        its retention."""
        if self._archive is not None or self.options.hot_events or self.options.hot_seconds:
            return True
        settings = await call(self._redis.hget(StoreKeys(store).meta, "settings"))
        retention = Retention.of(codec.loads(settings or "{}"))
        return any(
            v is not None
            for v in (
                retention.period_days,
                retention.max_bytes,
                retention.hot_events,
                retention.hot_seconds,
            )
        )

    async def _lease(self, store: str) -> bool:
        key = StoreKeys(store).lifecycle_lease
        ttl = int(self.options.lease_seconds * 1000)
        owner = self.options.owner
        if await call(self._redis.set(key, owner, nx=True, px=ttl)):
            return True
        holder = await call(self._redis.get(key))
        if holder == owner:
            await call(self._redis.pexpire(key, ttl))
            return True
        return False

    # -- one store ----------------------------------------------------------------------------

    async def step(self, store: str) -> bool:
        """Bounded work on one store; True if more is left to do."""
        k = StoreKeys(store)
        fields = await call(
            self._redis.hmget(k.meta, "uid", "head", "low", "archived", "oldest", "settings")
        )
        uid = fields[0]
        if uid is None:
            return False
        head, low = int(fields[1] or 0), int(fields[2] or 1)
        archived, oldest = int(fields[3] or 0), int(fields[4] or 1)
        retention = Retention.of(codec.loads(fields[5] or "{}"))
        state = self.stats.stores.setdefault(store, StoreState())
        state.head, state.low, state.oldest, state.archived = head, low, oldest, archived
        if head == 0:
            return False
        bound, partial = await self._retention_bound(store, retention, head, oldest)
        hot = await self._hot_bound(store, retention, head)
        more = partial
        if self._archive is not None and low < bound and archived < bound - 1:
            # Retention deletes events that were never archived: they leave Redis first, counted
            # as gone for good while ``archived`` still says they were never copied. The copy
            # starts past them (``Archiver.copy``) and moves ``archived`` over them: trimmed
            # after it, they would look archived, and their bytes would stay counted (each step
            # then deleting more to make up for bytes that are no longer there).
            low, trimmed_all = await self._trim_redis(store, uid, bound, hot, [])
            state.low = low
            if low < bound:
                # Nothing is copied past them before they are gone: the next step goes on (at
                # once if this one ran out of its budget; a round later if the trim was refused).
                return partial or not trimmed_all
        if self._archive is not None:
            archived, copied_all, copied = await self._copy(store, uid, archived, bound, head, hot)
            state.archived = archived
            more = more or not copied_all
        else:
            copied = []
        low, trimmed_all = await self._trim_redis(store, uid, bound, hot, copied)
        state.low = low
        more = more or not trimmed_all
        if self._archive is not None and bound > oldest:
            done = await self._delete_archived(store, uid, bound)
            more = more or not done
            if done and low >= bound:
                state.oldest = int(
                    await call(self._mark(keys=[k.meta], args=[uid, "oldest", bound, 0]))
                )
        elif self._archive is None:
            state.oldest = low
        return more

    async def _retention_bound(
        self, store: str, retention: Retention, head: int, oldest: int
    ) -> tuple[int, bool]:
        """R: positions below it are deleted everywhere (never the head); and whether R is only
        part of the way (the size limit is sought a page at a time: the next step goes on)."""
        bound, partial = oldest, False
        if retention.period_days is not None:
            cutoff = time.time() - retention.period_days * 86400
            moment = datetime.fromtimestamp(cutoff, UTC)
            bound = max(bound, await self._reader.first_kept_at(store, moment))
        if retention.max_bytes is not None:
            by_size, partial = await self._size_bound(store, retention.max_bytes, oldest)
            bound = max(bound, by_size)
        return min(bound, head), partial and bound < head

    async def _size_bound(self, store: str, limit: int, oldest: int) -> tuple[int, bool]:
        """The first position to keep so the log's JSON is at most ``limit`` bytes, and whether
        more must go after it (one page of the oldest events at a time: later steps go on)."""
        total = int(await call(self._redis.hget(StoreKeys(store).meta, "bytes")) or 0)
        excess = total - limit
        if excess <= 0:
            return oldest, False
        piece = await self._reader.after(store, oldest - 1, self.options.delete_batch)
        for event in piece.events:
            excess -= body_size(event.json)
            if excess <= 0:
                return event.global_position + 1, False
        if not piece.events:
            return oldest, False
        return piece.events[-1].global_position + 1, True

    async def _hot_bound(self, store: str, retention: Retention, head: int) -> int:
        """Positions below it may leave Redis (if archived, or with no archive at all)."""
        events = retention.hot_events or self.options.hot_events
        seconds = retention.hot_seconds or self.options.hot_seconds
        bound = 1
        if events is not None:
            bound = max(bound, head - events + 1)
        if seconds is not None:
            moment = datetime.fromtimestamp(time.time() - seconds, UTC)
            bound = max(bound, await self._reader.first_kept_at(store, moment))
        return bound

    async def _copy(
        self, store: str, uid: str, archived: int, bound: int, head: int, hot: int
    ) -> tuple[int, bool, list[Held]]:
        """Copy the next events to the archive: the new ``archived``, whether all are, and what
        the pages copied hold. Each page moves out of Redis (below ``hot``) while the next ones
        are copied (``_Trims``): a step that copied 50,000 events and only then trimmed them
        left the copy waiting on Redis for a fifth of its time."""
        assert self._archiver is not None
        trims = _Trims(lambda pages: self._trim_redis(store, uid, bound, hot, pages))
        try:
            archived, done, copied = await self._archiver.copy(
                store, uid, archived, bound, head, trims.add, cut=hot - 1
            )
        except BaseException:
            await trims.cancel()
            raise
        await trims.finish()
        state = self.stats.stores.get(store)
        if state is not None:
            state.archive_lag_seconds = self._archiver.lag_seconds
        return archived, done, copied

    async def _trim_redis(
        self, store: str, uid: str, bound: int, hot: int, copied: list[Held]
    ) -> tuple[int, bool]:
        """Move the oldest events out of Redis, up to ``step_events`` of them, a batch per
        script call; the lowest position left in Redis and whether nothing more may go.

        The script never reads the entries it trims: reading them inside Lua (Redis turns each
        reply into Lua tables) cost 3 us per event of the one Redis every append waits on. It is
        told what they hold (events per stream, types, tags, bytes) and checks that against the
        store's indexes before it trims anything. What this step just copied, the copy already
        read (``copied``); anything else is read here."""
        k = StoreKeys(store)
        archiving = "1" if self._archive is not None else "0"
        pages = deque(copied)
        left = self.options.step_events
        while True:
            state = await call(self._redis.hmget(k.meta, "uid", "head", "low", "archived"))
            if state[0] != uid:
                return 1, True
            head, low, archived = int(state[1] or 0), int(state[2] or 1), int(state[3] or 0)
            upto = hot if self._archive is None else min(hot, archived + 1)
            upto = min(max(upto, bound), head)
            if upto <= low:
                return low, True
            most = min(self.options.trim_batch, left)
            while pages and pages[0].first < low:
                pages.popleft()
            if pages and pages[0].first == low and pages[0].last < upto:
                held = pages.popleft().copy()  # extended below: the caller's pages stay as they are
                while pages and pages[0].last < upto and held.count + pages[0].count <= most:
                    held.extend(pages.popleft())
            else:
                last = min(upto - 1, low + most - 1)
                if pages and low < pages[0].first <= last:
                    last = pages[0].first - 1  # up to where a page copied in this step starts
                entries = await log_entries(self._redis, k.log, low, last)
                if len(entries) != last - low + 1 or int(entries[0][0].partition(b"-")[0]) != low:
                    # Moved meanwhile (another pod trimmed): the next round goes on from there.
                    return low, True
                held = summarize(
                    entries, low, bound, archived if self._archive is not None else None
                )
            reply = await call(
                self._trim(
                    keys=[k.meta, k.log, k.offsets, k.times],
                    args=[
                        uid,
                        low,
                        held.last,
                        archived,
                        bound,
                        hot,
                        archiving,
                        held.gone,
                        k.stream_prefix,
                        k.type_prefix,
                        k.tag_prefix,
                        *held.arguments(),
                    ],
                )
            )
            code = int(reply[0])
            if code == -1:
                return 1, True
            if code == -2:
                self.stats.errors += 1
                log.error(
                    "a store's log and its stream index disagree: not trimmed",
                    extra={"store": store, "position": low, "detail": reply[1]},
                )
                return low, True
            trimmed = int(reply[1])
            self.stats.trimmed += trimmed
            if self._archive is None:
                self.stats.deleted += trimmed
            left -= trimmed
            if trimmed == 0 or left <= 0:
                return code, trimmed == 0
            if code >= upto:
                return code, True

    async def _delete_archived(self, store: str, uid: str, bound: int) -> bool:
        """Retention in the archive: delete a batch below ``bound``; True once none is left."""
        assert self._archive is not None
        archive_id = await self._archive.store_id(uid, store)
        if archive_id is None:
            return True
        count, size = await self._archive.delete_returning(
            archive_id, bound, self.options.delete_batch
        )
        if count:
            self.stats.deleted += count
            await call(self._mark(keys=[StoreKeys(store).meta], args=[uid, "oldest", 0, size]))
        return count < self.options.delete_batch


class _Trims:
    """Trims of the pages a copy archives, as it archives them (``add``), run one after the
    other in a task of their own while the copy goes on. ``finish()`` waits for those under way
    and raises what they raised; ``cancel()`` stops them (a trim is one script call: cut short,
    it did all or nothing)."""

    def __init__(self, trim: Callable[[list[Held]], Awaitable[object]]) -> None:
        self._trim = trim
        self._pages: list[Held] = []
        self._added = asyncio.Event()
        self._finishing = False
        self._task: asyncio.Task[None] | None = None

    def add(self, held: Held) -> None:
        self._pages.append(held)
        self._added.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="trims")

    async def _run(self) -> None:
        while True:
            await self._added.wait()
            self._added.clear()
            pages, self._pages = self._pages, []
            if pages:
                await self._trim(pages)
            if self._finishing and not self._pages:
                return

    async def finish(self) -> None:
        task = self._task
        if task is not None:
            self._finishing = True
            self._added.set()
            await task

    async def cancel(self) -> None:
        task, self._task = self._task, None
        await discard(task)  # (the step failed for its own reason)


def body_size(event_json: str) -> int:
    """Bytes of an event's stored body (its JSON after the positions ``codec.positioned``
    writes), as the append script counts them."""
    start = event_json.index(',"streamPosition":') + 18
    return len(event_json[event_json.index(",", start) + 1 :].encode())
