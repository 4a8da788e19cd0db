"""Copying a store's log from Redis into the archive: the copy half of the lifecycle's step
(``broker.lifecycle``; the invariants: docs/lifecycle.md, "The archive boundary").

What it guarantees: events reach PostgreSQL in position order, a page at a time, each page in one
transaction, and the store's ``archived`` (A) moves in Redis only after that transaction
committed, never backwards (``scripts/lifecycle_mark.lua``). A copy starts after the highest of A
and the archive's own highest position, so a crash between a commit and its mark repeats nothing
and skips nothing; two pods that overlap (a lease that expired under a slow copy) are told apart
by the primary key on (store, position): the loser's page is refused whole, and its next step
starts again from the archive's highest position.

Why it looks the way it does (it must keep up with the appends twice over, ``bench/archive.py``;
py-spy showed the first version spending its time decoding entries into str, parsing createdAt
into datetimes and building a tuple per row for asyncpg, and waiting: Redis, Python and
PostgreSQL took turns):

- entries are read undecoded (on one Redis server over plain TCP, through ``bulk_lane``: a
  connection of our own parsed by hiredis as the bytes arrive; through redis-py, the page went
  through an asyncio stream's buffer and its flow control first: 7% more of the copy's CPU) and
  written as PostgreSQL's binary COPY format straight from their bytes: the event's body goes
  to the archive as the log holds it, never decoded or re-encoded; createdAt is read where the
  append writes it (``codec.created_at_raw``), each second parsed once;
- three pages are under way at once: PostgreSQL writes one while this process encodes the next
  and Redis writes out the one after (``_Pages``), and the encoding lets the loop run between
  blocks so that PostgreSQL's transaction goes on meanwhile (a timeline of the copy showed the
  three taking turns, ~25 ms per 5,000-event page, before; ~14 ms after);
- a step goes on for up to ``step`` events (and a third of the lease), so a backlog is copied in
  long runs, and other stores still get their turn.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from typing import Any

from redis.client import NEVER_DECODE

from . import codec, runs
from .aio import discard
from .archive import Archive, CopyConflict
from .errors import Unavailable
from .keys import ARCHIVE_FORGET, StoreKeys
from .redis import bulk_lane, call, load_script

log = logging.getLogger("deltagate.lifecycle")

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(slots=True)
class Held:
    """What consecutive events of a store's log (``first`` to ``last``) hold, as
    ``scripts/trim.lua`` is told before it moves them out of Redis."""

    first: int
    last: int
    streams: dict[bytes, int]
    """Events per stream."""
    types: set[bytes]
    tags: set[bytes]
    gone: int = 0
    """Bytes of their bodies that leave for good (not archived)."""

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def copy(self) -> Held:
        return Held(
            self.first,
            self.last,
            dict(self.streams),
            set(self.types),
            set(self.tags),
            self.gone,
        )

    def extend(self, following: Held) -> None:
        """Add what the events right after these hold."""
        assert following.first == self.last + 1
        for stream_id, count in following.streams.items():
            self.streams[stream_id] = self.streams.get(stream_id, 0) + count
        self.types |= following.types
        self.tags |= following.tags
        self.gone += following.gone
        self.last = following.last

    def arguments(self) -> list[Any]:
        """The script's arguments from its 12th on."""
        args: list[Any] = [len(self.streams)]
        for stream_id, count in self.streams.items():
            args += (stream_id, count)
        args.append(len(self.types))
        args += self.types
        args += self.tags
        return args


def summarize(entries: list[Any], first: int, bound: int, archived: int | None) -> Held:
    """What raw log entries from position ``first`` on hold; the bytes that leave for good:
    all of them without an archive (``archived`` None), with one those that retention deletes
    (below ``bound``) before they were archived."""
    streams: dict[bytes, int] = {}
    types: set[bytes] = set()
    tags: set[bytes] = set()
    gone = 0
    for i, (_, fields) in enumerate(entries):
        stream_id = fields[1]
        streams[stream_id] = streams.get(stream_id, 0) + 1
        types.add(fields[3])
        if len(fields) == 10:
            tags.update(t for t in fields[7].split(b",") if t)
        if archived is None or archived < first + i < bound:
            gone += len(fields[-1])
    return Held(first, first + len(entries) - 1, streams, types, tags, gone)


@dataclass(frozen=True, slots=True)
class Page:
    """Consecutive events of a store's log, encoded for one COPY."""

    data: list[bytes]
    """PostgreSQL's binary COPY of its runs, in pieces (``runs.Runs.chunks``)."""
    size: int
    """Bytes of ``data``."""
    created: int
    """Microseconds since 2000 of the page's first event (the archive lag when it waits)."""
    held: Held


class Archiver:
    """Copies stores' logs into the archive, for one pod's lifecycle. ``on_copied(n)`` is called
    after each committed page."""

    def __init__(
        self,
        redis: Any,
        archive: Archive,
        *,
        page: int,
        page_bytes: int,
        step: int,
        seconds: float,
        on_copied: Callable[[int], None],
    ) -> None:
        self._redis = redis
        self._archive = archive
        self._page = page
        self._page_bytes = page_bytes
        self._sizes: dict[str, int] = {}
        """Events per page per store incarnation (uid), as the last step left it."""
        self._step = step
        self._seconds = seconds
        self._on_copied = on_copied
        self._mark = load_script(redis, "lifecycle_mark")
        self._highest: dict[str, int] = {}
        """The archive's highest position per store incarnation (uid), once read."""
        self.lag_seconds = 0.0
        """Age of the oldest event the last copy left behind (0: it copied up to the head)."""

    async def copy(
        self,
        store: str,
        uid: str,
        archived: int,
        bound: int,
        head: int,
        on_page: Callable[[Held], None] | None = None,
        cut: int = 0,
    ) -> tuple[int, bool, list[Held]]:
        """Copy the store's next events (those below ``bound`` are retention's to delete, not
        to copy): the new ``archived``, whether everything up to ``head`` is, and what the pages
        copied hold (for the trim that follows). ``on_page`` is told of each page once it is
        committed and marked archived, while the next is copied. No page holds both ``cut`` and
        the position after it (the last that may leave Redis: the trim that follows is told what
        the pages below it hold, rather than reading them again)."""
        archive_id = await self._archive.store_id(uid, store, create=True)
        assert archive_id is not None
        highest = self._highest.get(uid)
        if highest is None:
            highest = self._highest[uid] = await self._archive.highest(archive_id)
        start = max(archived, highest, bound - 1)
        copied: list[Held] = []
        if start >= head:
            self.lag_seconds = 0.0
            return max(archived, start), True, copied
        meta, log_key = StoreKeys(store).meta, StoreKeys(store).log
        pages = _Pages(
            self._redis,
            log_key,
            archive_id,
            start,
            head,
            size=await self._sizes_of(uid, meta, head),
            cut=cut,
            left=self._step,
            deadline=time.monotonic() + self._seconds,
        )
        ahead: asyncio.Task[Page | None] | None = None
        try:
            page = await pages.next()
            while True:
                if page is None:
                    # Not in Redis: trimmed without being archived can only mean retention
                    # deleted it (below R) or the store went away; the next step sees which.
                    return archived, True, copied
                held = page.held
                if pages.reading:
                    ahead = asyncio.get_running_loop().create_task(pages.next())
                try:
                    await self._archive.copy(archive_id, held.first, held.last, page.data)
                except CopyConflict:
                    # Another pod copied these meanwhile (a lease that expired under a slow copy).
                    self._highest.pop(uid, None)
                    return archived, False, copied
                self._highest[uid] = held.last
                self._on_copied(held.count)
                marked = int(
                    await call(self._mark(keys=[meta], args=[uid, "archived", held.last, 0]))
                )
                if marked < 0:  # deleted or re-created while we copied: those rows are no one's
                    await forget(self._redis, self._archive, uid)
                    self._highest.pop(uid, None)
                    return archived, True, []
                archived = marked
                copied.append(held)
                if on_page is not None:
                    on_page(held)
                if ahead is None:
                    break
                page, ahead = await ahead, None
        finally:
            await discard(ahead)  # (only if the step failed, for its own reason)
            await pages.close()
            self._sizes[uid] = pages.size.events
        if archived >= head:
            self.lag_seconds = 0.0
        else:
            one = Sizes(1, 1, 1)
            following = _Pages(self._redis, log_key, archive_id, archived, head, size=one, left=1)
            try:
                page = await following.next()
            finally:
                await following.close()
            self.lag_seconds = 0.0 if page is None else _age(page.created)
        return archived, archived >= head, copied

    async def _sizes_of(self, uid: str, meta: str, head: int) -> Sizes:
        """The store's page sizes as its last step left them, or by its average event."""
        events = self._sizes.get(uid)
        if events is not None:
            return Sizes(self._page, self._page_bytes, events)
        size, oldest = await call(self._redis.hmget(meta, "bytes", "oldest"))
        average = int(size or 0) / max(1, head - int(oldest or 1) + 1)
        return Sizes.first(self._page, self._page_bytes, average)


class Sizes:
    """How many events the next page asks for (``events``): at most ``most``, and about
    ``budget`` bytes (of the page as encoded: the bodies and 24 bytes an event). A store's
    first two pages are sized by its average event (what the append counts, over all its
    events); each later one by the last page encoded (the one before the page in flight): as
    many as would have filled the budget, at most twice as many as that page held or the
    size asked, whichever is more (a page cut short, at the head, the hot bound or the step's
    end, says nothing against a larger one). An estimate, not a bound: a page whose events are
    much larger than those of the two before it holds more."""

    def __init__(self, most: int, budget: int, events: int) -> None:
        self.most = most
        self.budget = budget
        self.events = max(1, min(most, events))

    @classmethod
    def first(cls, most: int, budget: int, average: float) -> Sizes:
        """For a store whose events have ``average`` bytes."""
        return cls(most, budget, int(budget // max(average, 1.0)))

    def saw(self, count: int, size: int) -> None:
        """A page of ``count`` events was encoded in ``size`` bytes."""
        fit = self.budget * count // max(size, 1)
        self.events = max(1, min(self.most, 2 * max(count, self.events), fit))


class _Pages:
    """A store's log after position ``after``, read from Redis a page (as many events as
    ``size`` says) at a time, up to ``left`` events, the head or the ``deadline``; each page
    encoded (``Page``). A page that would hold ``cut`` and the position after it ends at ``cut``.

    A page's XRANGE is sent as soon as the page before it has come in, before that one is
    encoded: Redis writes out the next page while this process encodes the current one (and
    hands the one before to PostgreSQL), so the three take turns less. One XRANGE at most is
    in flight; ``close()`` cancels it."""

    def __init__(
        self,
        redis: Any,
        log_key: str,
        archive_id: int,
        after: int,
        head: int,
        *,
        size: Sizes,
        left: int,
        deadline: float = float("inf"),
        cut: int = 0,
    ) -> None:
        self._redis = redis
        self._log_key = log_key
        self._archive_id = archive_id
        self._head = head
        self.size = size
        self._left = left
        self._deadline = deadline
        self._after = after
        self._cut = cut
        self._fetch: asyncio.Task[Any] | None = self._send(after, self._count(after))

    @property
    def reading(self) -> bool:
        """Whether a next page is on its way (``next()`` has more to give)."""
        return self._fetch is not None

    def _count(self, after: int) -> int:
        """Events the page after ``after`` asks for: what ``size`` says, within what is left,
        ending at ``cut`` if it would go past it."""
        count = min(self.size.events, self._left)
        if after < self._cut:
            count = min(count, self._cut - after)
        return count

    def _send(self, after: int, count: int) -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(self._xrange(after, count))

    async def _xrange(self, after: int, count: int) -> Any:
        return await log_entries(self._redis, self._log_key, after + 1, "+", count)

    async def next(self) -> Page | None:
        """The next page; None if Redis does not hold the next position (or holds a page with
        a hole, which the log never has). Only while ``reading``."""
        assert self._fetch is not None
        fetch, self._fetch = self._fetch, None
        entries = await fetch
        if not entries:
            return None
        first = int(entries[0][0].partition(b"-")[0])
        last = int(entries[-1][0].partition(b"-")[0])
        if first != self._after + 1 or last - first + 1 != len(entries):
            return None
        self._after = last
        self._left -= len(entries)
        if last < self._head and self._left > 0 and time.monotonic() < self._deadline:
            self._fetch = self._send(last, self._count(last))
        page = await encode_between(self._archive_id, first, entries)
        # Its encoded size sizes the page after the one just asked for (a sum of the bodies
        # before that XRANGE went out touched each entry once more than the encoding does).
        self.size.saw(len(entries), page.size)
        return page

    async def close(self) -> None:
        fetch, self._fetch = self._fetch, None
        await discard(fetch)


async def log_entries(
    redis: Any, log_key: str, first: int, last: int | str, count: int | None = None
) -> Any:
    """A store's log entries from position ``first`` to ``last`` (``"+"``: the end), ``count``
    at most, undecoded (``[id, fields]`` of bytes): over ``bulk_lane`` where the client has one,
    else through redis-py. The lifecycle's every read of the log (a copy's pages, what a trim
    is told of) goes through here."""
    command: list[Any] = ["XRANGE", log_key, f"{first}-0", last if last == "+" else f"{last}-0"]
    if count is not None:
        command += ("COUNT", count)
    bulk = bulk_lane(redis)
    if bulk is not None:
        return await call(bulk.execute(*command))
    return await call(redis.execute_command(*command, **{NEVER_DECODE: True}))


def encode(archive_id: int, first: int, entries: list[Any]) -> Page:
    """Raw log entries from position ``first`` on (``[id, [b"s", stream, b"t", type, b"p",
    streamPosition, (b"g", tags,) b"e", body]]``, fields in the order scripts/lib/write.lua
    writes them) as the archive's rows (``broker.runs``), with what they hold. Entries of the
    first format (``[b"s", stream, b"t", type, b"e", json]``) held the whole JSON: their
    positions are cut off here."""
    encoder = Encoder(archive_id, first, entries)
    for _ in encoder.blocks():
        pass
    return encoder.page()


async def encode_between(archive_id: int, first: int, entries: list[Any]) -> Page:
    """``encode``, letting the loop run between blocks: a page takes milliseconds to encode,
    and meanwhile the copy of the page before it goes on (PostgreSQL's and Redis' replies are
    handled, its next statement sent) instead of waiting for all of it."""
    encoder = Encoder(archive_id, first, entries)
    for _ in encoder.blocks():
        await asyncio.sleep(0)
    return encoder.page()


class Encoder:
    """``encode``'s work, a block (``runs.BLOCK`` positions) at a time (``blocks()``), then
    ``page()``."""

    def __init__(self, archive_id: int, first: int, entries: list[Any]) -> None:
        self._first = first
        self._entries = entries
        self._rows = runs.Runs(archive_id)
        self._pieces = runs.Pieces(archive_id)
        self._streams: dict[bytes, int] = {}
        """Events per stream of the blocks written (and types and tags they hold)."""
        self._kinds: set[bytes] = set()
        self._tags: set[bytes] = set()
        self._times: dict[bytes, int] = {}
        self._seconds: dict[bytes, int] = {}
        self._tails: dict[bytes, tuple[int, bytes]] = {}
        """What each tail seen says: createdAt in microseconds, and packed (``INT8``)."""

    def _micros(self, text: bytes) -> int:
        created = self._times.get(text)
        if created is None:
            created = self._times[text] = _micros(text, self._seconds)
        return created

    def _created(self, bodies: list[bytes]) -> tuple[bytes, int, int]:
        """The bodies' times created as a run's column (``runs.Run.created_column``), with the
        least and the greatest, in microseconds since 2000. The append writes createdAt last,
        in one shape: a body's last ``TAIL`` bytes (``"createdAt":"2026-01-02T03:04:05.678Z"}``)
        are its time. An append's events share one and follow each other, so each event costs
        a slice and a comparison with the one before, and each distinct tail is parsed and
        packed once (py-spy: ``created_at_raw`` per event was a sixth of the copy's CPU;
        callgrind: this is a twentieth of its instructions)."""
        column: list[bytes] = []
        times: set[int] = set()
        at = 0
        for tail, same in groupby(list(map(LAST_TAIL, bodies))):
            count = len(list(same))
            known = self._tail(tail)
            if known is None:  # a body of another shape: each of those read whole
                for body in bodies[at : at + count]:
                    created = self._micros(codec.created_at_raw(body))
                    times.add(created)
                    column.append(INT8.pack(created))
            else:
                times.add(known[0])
                column.append(known[1] * count)
            at += count
        return b"".join(column), min(times), max(times)

    def _created_of(self, body: bytes) -> int:
        """One body's createdAt (``_created``'s way, for one)."""
        known = self._tail(body[-TAIL:])
        return self._micros(codec.created_at_raw(body)) if known is None else known[0]

    def _tail(self, tail: bytes) -> tuple[int, bytes] | None:
        """What a body's last ``TAIL`` bytes say, createdAt in microseconds and packed
        (``INT8``), parsed once per distinct tail; None if they are not createdAt as the
        append writes it."""
        known = self._tails.get(tail)
        if known is None:
            if not (
                tail[:13] == codec.CREATED_AT and tail[-2:] == b'"}' and b'"' not in tail[13:-2]
            ):
                return None
            created = self._micros(tail[13:-2])
            known = self._tails[tail] = (created, INT8.pack(created))
        return known

    def blocks(self) -> Iterator[None]:
        """Encode the entries block by block, pausing after each."""
        start = 0
        while start < len(self._entries):
            position = self._first + start
            end = start + runs.block_start(position) + runs.BLOCK - position
            self._block(start, end)
            self._write_block()
            start = end
            yield

    def _write_block(self) -> None:
        """The block's runs written as COPY rows, and counted in what the page holds, while
        its entries are still in the cache (a page's rows written at its end, all at once,
        held the loop for up to 7 ms)."""
        streams, kinds, tags = self._streams, self._kinds, self._tags
        for run in self._rows.take():
            self._pieces.add(run)
            streams[run.stream_id] = streams.get(run.stream_id, 0) + len(run.positions)
            kinds.update(run.types)
            tags.update(run.tags)

    def _block(self, start: int, end: int) -> None:
        at = self._first + start  # the position of entries[start]
        held = list(map(FIELDS, self._entries[start:end]))
        # The events of each stream together, as spans of ``held`` (an append's events are
        # consecutive): a stream's run is then built a column at a time (list comprehensions,
        # one array per column), not an event at a time.
        spans: dict[bytes, list[int]] = {}
        low = 0
        for stream_id, same in groupby(map(STREAM, held)):
            high = low + len(list(same))
            spans.setdefault(stream_id, []).extend((low, high))
            low = high
        for stream_id, bounds in spans.items():
            if len(bounds) == 2:
                events = held[bounds[0] : bounds[1]]
                positions = list(range(at + bounds[0], at + bounds[1]))
            else:
                events, positions = [], []
                for low, high in zip(bounds[::2], bounds[1::2], strict=True):
                    events += held[low:high]
                    positions += range(at + low, at + high)
            if not self._run(stream_id, events, positions):
                self._one_by_one(stream_id, events, positions)

    def _run(self, stream_id: bytes, events: list[Any], positions: list[int]) -> bool:
        """A stream's events of a block as one run, if they are consecutive in the stream and
        of the current format without tags (nearly always); False to go one by one."""
        if list(map(len, events)).count(8) != len(events):
            return False
        stream_position = int(events[0][5])
        if int(events[-1][5]) - stream_position != len(events) - 1:
            return False
        bodies = list(map(BODY, events))
        created, earliest, latest = self._created(bodies)
        names = list(map(TYPE, events))
        if names.count(names[0]) == len(names):  # one type (compared, not hashed)
            types = {names[0]: 0}
            kinds = [0] * len(names)
        else:
            types = {name: i for i, name in enumerate(dict.fromkeys(names))}
            kinds = list(map(types.__getitem__, names))
        self._rows.extend(
            runs.Run(
                stream_id,
                stream_position,
                positions=positions,
                created=[earliest, latest],
                created_column=created,
                kinds=kinds,
                tag_counts=[0] * len(events),
                lengths=list(map(len, bodies)),
                bodies=bodies,
                types=types,
            )
        )
        return True

    def _one_by_one(self, stream_id: bytes, events: list[Any], positions: list[int]) -> None:
        for position, fields in zip(positions, events, strict=True):
            body = fields[-1]
            if len(fields) >= 8:
                stream_position = int(fields[5])
            else:
                stream_position, body = _first_format(body)
            named = NO_TAGS
            if len(fields) == 10:
                named = [t for t in fields[7].split(b",") if t]
            created = self._created_of(body)
            self._rows.add(position, stream_id, stream_position, fields[3], created, named, body)

    def page(self) -> Page:
        """The page, once every block is encoded."""
        first, entries = self._first, self._entries
        summary = Held(first, first + len(entries) - 1, self._streams, self._kinds, self._tags)
        created = self._created_of(entries[0][1][-1])
        data = self._pieces.done()
        return Page(data, sum(map(len, data)), created, summary)


NO_TAGS: list[bytes] = []
TAIL = len(b'"createdAt":"2026-01-02T03:04:05.678Z"}')
INT8 = struct.Struct(">q")
# (Columns of a page are picked with these rather than list comprehensions: callgrind counted
# a third of the instructions.)
FIELDS = itemgetter(1)
"""An entry's fields (of ``[id, fields]``)."""
STREAM = itemgetter(1)
"""The stream id (of an entry's fields)."""
TYPE = itemgetter(3)
BODY = itemgetter(7)
LAST_TAIL = itemgetter(slice(-TAIL, None))


def _first_format(json: bytes) -> tuple[int, bytes]:
    """The stream position and the body of a whole event JSON (``codec.positioned``)."""
    start = json.index(b'"streamPosition":') + 17
    end = json.index(b",", start)
    return int(json[start:end]), json[end + 1 :]


def _micros(text: bytes, seconds: dict[bytes, int]) -> int:
    """An ISO 8601 time as microseconds since 2000-01-01 UTC (a time without an offset is
    UTC). The append's own shape, ``2026-01-02T03:04:05.678Z``, is parsed once per second."""
    if len(text) == 24 and text[19:20] == b"." and text[23:] == b"Z":
        whole = text[:19]
        second = seconds.get(whole)
        if second is None:
            second = seconds[whole] = _parse(whole + b"Z")
        return second + int(text[20:23]) * 1000
    return _parse(text)


def _parse(text: bytes) -> int:
    moment = datetime.fromisoformat(text.decode())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // MICROSECOND


def _age(micros: int) -> float:
    return max(0.0, time.time() - (EPOCH.timestamp() + micros / 1e6))


async def forget(redis: Any, archive: Archive, uid: str) -> bool:
    """Delete the archived events of a deleted store (incarnation ``uid``). The intent is
    recorded first (``ARCHIVE_FORGET``): when the archive does not answer, or the process dies
    on the way, the lifecycle deletes them later (``forget_pending``), so a deleted store's
    events never stay in the archive for good. True if they are gone now."""
    await call(redis.sadd(ARCHIVE_FORGET, uid))
    try:
        await _forget_recorded(redis, archive, uid)
    except Unavailable as exc:
        log.warning(
            "archived events of a deleted store are deleted once the archive answers",
            extra={"uid": uid, "error": exc.message},
        )
        return False
    return True


async def forget_pending(redis: Any, archive: Archive, limit: int = 10) -> int:
    """Delete the archived events of up to ``limit`` stores whose deletion the archive missed;
    how many were. Raises Unavailable while it does not answer."""
    uids = await call(redis.srandmember(ARCHIVE_FORGET, limit))
    for uid in uids:
        await _forget_recorded(redis, archive, uid)
    return len(uids)


async def _forget_recorded(redis: Any, archive: Archive, uid: str) -> None:
    """Delete what ``ARCHIVE_FORGET`` records for ``uid``, then the record."""
    await archive.forget(uid)
    await call(redis.srem(ARCHIVE_FORGET, uid))
