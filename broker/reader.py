"""The one reader of a store's log, across its two parts: the hot end in Redis and the cold part
in the archive (PostgreSQL), for every consumer (stream reads, store queries, WebSocket replays and
gap repair, webhook catch-up, export).

The rule it owns (docs/lifecycle.md): every position in ``[oldest, head]`` is in the archive or in
Redis (Redis holds ``[low, head]``; retention trims Redis only below what the archive holds, and
never the head itself). A forward read asks Redis first; when Redis's first entry is not the next
position, the missing ones were trimmed from Redis after being archived, so it reads them from the
archive, then comes back to Redis on its next page. That is also how it stays right when trimming
races it: a page never assumes where the boundary is, it looks at what Redis returned.

When history is gone (retention deleted it everywhere, or there is no archive), a read that starts
before the oldest kept position says so: ``truncated_before`` is the first position it still has.

Size: ~550 lines: the Redis/archive boundary rule is written once, here, for every kind of
read (stream, store, DCB, time lookups), which is the point of this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

from . import codec
from .archive import Archive
from .errors import StoreNotFound, VersionConflict
from .filters import Filter
from .keys import DCB_STREAM, StoreKeys, valid_store_name
from .query import EventCheck, StreamCheck
from .redis import call, load_script
from .types import Direction, ExpectedVersion, LoggedEvent, Page, StreamInfo

SCAN_PAGE = 1000
StreamOrder = Literal["createdAt", "updatedAt", "streamPosition", "streamId"]
STREAM_ORDER: dict[str, Any] = {
    "updatedAt": lambda s: datetime.fromisoformat(s.updated_at),
    "streamPosition": lambda s: s.stream_position,
    "streamId": lambda s: s.stream_id,
}
CLOCK_SKEW = timedelta(seconds=5)
"""How far pods' clocks may disagree for a ``toDate`` bound to be exact: an event is stamped with
its appending pod's clock, so one appended after another may carry an earlier time."""


@dataclass(frozen=True, slots=True)
class Slice:
    """Consecutive events of a store's log; ``truncated_before``: the read started before the
    oldest position kept, which is this one."""

    events: list[LoggedEvent]
    truncated_before: int | None = None


class StreamSlice(NamedTuple):
    events: list[LoggedEvent]
    version: int
    truncated_before: int | None = None
    """A stream position: the read started before the stream's first kept event, which is this."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """Where a store's log lives now (meta: docs/lifecycle.md)."""

    uid: str
    low: int
    """The lowest position Redis holds."""
    oldest: int
    """The lowest position kept anywhere."""


def check_version(stream_id: str, expected: ExpectedVersion, version: int) -> None:
    """Raise VersionConflict unless a stream at ``version`` is what ``expected`` asks for: the
    append script's rule (``scripts/append.lua``), for reads that state an expected version."""
    if expected == "any":
        return
    if expected == "no_stream":
        ok = version == 0
    elif expected == "stream_exists":
        ok = version > 0
    else:
        ok = expected == version
    if not ok:
        raise VersionConflict(stream_id, expected, version)


def keys_of(store: str) -> StoreKeys:
    """Keys of an existing store; a name that could never be a store is simply not found."""
    if not valid_store_name(store):
        raise StoreNotFound(store)
    return StoreKeys(store)


class LogReader:
    """Reads of every store's log. Safe to share between tasks."""

    def __init__(self, redis: Any, archive: Archive | None = None) -> None:
        self._redis = redis
        self.archive = archive
        self._read_stream = load_script(redis, "read_stream")

    # -- the store -----------------------------------------------------------------------------

    async def head(self, store: str) -> int:
        """The store's last globalPosition (0 when empty). Raises StoreNotFound."""
        head = await call(self._redis.hget(keys_of(store).meta, "head"))
        if head is None:
            raise StoreNotFound(store)
        return int(head)

    async def head_and_epoch(self, store: str) -> tuple[int, str]:
        """The store's head and epoch (its uid: new whenever the store is created). Raises
        StoreNotFound."""
        head, uid = await call(self._redis.hmget(keys_of(store).meta, "head", "uid"))
        if uid is None:
            raise StoreNotFound(store)
        return int(head or 0), uid

    async def exists(self, store: str) -> bool:
        return valid_store_name(store) and bool(
            await call(self._redis.exists(StoreKeys(store).meta))
        )

    async def bounds(self, store: str) -> Bounds:
        uid, low, oldest = await call(
            self._redis.hmget(keys_of(store).meta, "uid", "low", "oldest")
        )
        if uid is None:
            raise StoreNotFound(store)
        return Bounds(uid, int(low or 1), int(oldest or 1))

    async def gone_before(self, store: str, after: int) -> int | None:
        """For a read of the events after ``after``: the oldest position the store keeps, when
        history the read would start in is gone (``truncatedBefore``); else None."""
        oldest = (await self.bounds(store)).oldest
        return oldest if after + 1 < oldest else None

    async def _archived(self, store: str, uid: str) -> int | None:
        """The archive's id of this incarnation of ``store`` (None: nothing archived)."""
        if self.archive is None:
            return None
        return await self.archive.store_id(uid, store)

    # -- pages in position order ---------------------------------------------------------------

    async def after(self, store: str, after: int, limit: int, until: int | None = None) -> Slice:
        """Up to ``limit`` consecutive events from ``after + 1`` on (up to ``until``)."""
        k = keys_of(store)
        if until is not None and after >= until:
            return Slice([])
        high = "+" if until is None else f"{until}-0"
        entries = await call(self._redis.xrange(k.log, f"{after + 1}-0", high, count=limit))
        first = _position(entries[0]) if entries else None
        if first == after + 1:
            return Slice([entry_event(e) for e in entries])
        if first is None and until is None:
            return Slice([])  # the head always stays in Redis: nothing after ``after``
        try:
            bounds = await self.bounds(store)
        except StoreNotFound:
            return Slice([])
        truncated = bounds.oldest if after + 1 < bounds.oldest else None
        start = max(after, bounds.oldest - 1)
        if start + 1 < bounds.low:
            archived = await self._archived(store, bounds.uid)
            if archived is not None and self.archive is not None:
                top = bounds.low - 1 if until is None else min(bounds.low - 1, until)
                rows = await self.archive.after(archived, start, top, limit)
                if rows:
                    if rows[0].global_position != start + 1:
                        truncated = rows[0].global_position  # retention went on meanwhile
                    return Slice(rows, truncated)
        if first is not None and first > after + 1 and truncated is None:
            truncated = first  # not archived (no archive, or deleted since): gone
        return Slice([entry_event(e) for e in entries], truncated)

    async def before(self, store: str, high: int | None, low: int, limit: int) -> Slice:
        """Up to ``limit`` events with positions in [low, high], highest first."""
        k = keys_of(store)
        top = "+" if high is None else f"{high}-0"
        entries = await call(self._redis.xrevrange(k.log, top, f"{max(low, 1)}-0", count=limit))
        events = [entry_event(e) for e in entries]
        if len(events) == limit:
            return Slice(events)
        bounds = await self.bounds(store)
        truncated = bounds.oldest if low < bounds.oldest else None
        below = events[-1].global_position - 1 if events else high
        if below is None:
            return Slice(events, truncated)  # an empty store
        below = min(below, bounds.low - 1)
        bottom = max(low, bounds.oldest)
        archived = await self._archived(store, bounds.uid)
        if below >= bottom and archived is not None and self.archive is not None:
            events += await self.archive.before(archived, below, bottom, limit - len(events))
        return Slice(events, truncated)

    async def read_after(self, store: str, after: int, limit: int) -> list[LoggedEvent]:
        """Up to ``limit`` events after ``after`` (history that is gone is skipped)."""
        return (await self.after(store, after, limit)).events

    async def scan(
        self,
        store: str,
        *,
        after: int = 0,
        until: int | None = None,
        direction: Direction = "forward",
        page: int = SCAN_PAGE,
    ) -> AsyncIterator[Slice]:
        """The store's log in pages: positions in (after, until] forward, or downwards from
        below ``after`` (0: the head) to ``until`` (inclusive) backward."""
        if direction == "forward":
            while True:
                piece = await self.after(store, after, page, until)
                if not piece.events:
                    if piece.truncated_before is not None:
                        yield piece  # the whole range is gone: said all the same
                    return
                yield piece
                after = piece.events[-1].global_position
            return
        high = None if after == 0 else after - 1
        low = until or 1
        while high is None or high >= low:
            piece = await self.before(store, high, low, page)
            if not piece.events:
                if piece.truncated_before is not None:
                    yield piece
                return
            yield piece
            high = piece.events[-1].global_position - 1

    # -- one stream ----------------------------------------------------------------------------

    async def read_stream(
        self,
        store: str,
        stream_id: str,
        *,
        direction: Direction = "forward",
        start: int | None = None,
        end: int | None = None,
        limit: int = 1000,
    ) -> StreamSlice:
        """Events of one stream between stream positions ``start`` and ``end`` (inclusive), in
        ``direction`` order, at most ``limit``; and the stream's current version."""
        k = keys_of(store)
        keys = [k.stream(stream_id), k.log, k.offsets]
        if direction == "forward":
            lo = start if start is not None else 0
            hi = lo + limit - 1 if end is None else min(end, lo + limit - 1)
        else:
            # The stream's end first (a start past it reads backward from the last event).
            version = int((await call(self._read_stream(keys=keys, args=[0, -1, stream_id])))[0])
            hi = version - 1 if start is None else min(start, version - 1)
            lo = max(end if end is not None else 0, hi - limit + 1)
        if hi < lo:
            reply = await call(self._read_stream(keys=keys, args=[0, -1, stream_id]))
            if int(reply[0]) == 0:
                await self.head(store)  # not found -> StoreNotFound
            return StreamSlice([], int(reply[0]))
        reply = await call(self._read_stream(keys=keys, args=[lo, hi, stream_id]))
        version, offset = int(reply[0]), int(reply[1])
        events = [entry_event(entry) for entry in reply[2:]]
        if version == 0 and not await self.exists(store):
            raise StoreNotFound(store)
        if lo >= offset:
            if direction == "backward":
                events.reverse()
            return StreamSlice(events, version)
        # The window starts below what Redis holds: the archive has the rest, or history is gone.
        forward = direction == "forward"
        if forward:
            # The first ``limit`` kept events from ``lo`` on: with history gone below them, not
            # the window [lo, lo + limit), which may hold none of them.
            top = offset - 1 if end is None else min(end, offset - 1)
            cold = await self._stream_archived(store, stream_id, lo, top, count=limit)
        else:
            top = min(hi, offset - 1)
            cold = await self._stream_archived(store, stream_id, lo, top)
        if not cold and top < offset - 1:
            # None kept in the window: the stream's first kept event may lie above it, archived.
            cold_above = await self._stream_archived(store, stream_id, top + 1, offset - 1, count=1)
            first = _stream_position(cold_above[0]) if cold_above else offset
        else:
            first = _stream_position(cold[0]) if cold else offset
        truncated = first if first > lo else None
        if forward:
            want = max(0, limit - len(cold))
            last = offset + want - 1 if end is None else min(end, offset + want - 1)
            if want and last > hi and offset < version:
                reply = await call(self._read_stream(keys=keys, args=[offset, last, stream_id]))
                events = [entry_event(entry) for entry in reply[2:]]
            events = cold + events[:want]
        else:
            events = cold + events
            events.reverse()
        return StreamSlice(events, version, truncated)

    async def _stream_archived(
        self, store: str, stream_id: str, lo: int, hi: int, *, count: int | None = None
    ) -> list[LoggedEvent]:
        if self.archive is None or hi < lo:
            return []
        bounds = await self.bounds(store)
        archived = await self._archived(store, bounds.uid)
        if archived is None:
            return []
        return await self.archive.stream(archived, stream_id, lo, hi, count=count)

    async def list_streams(
        self,
        store: str,
        *,
        limit: int = 100,
        offset: int = 0,
        where: StreamCheck | None = None,
        sort_by: StreamOrder = "createdAt",
        descending: bool = False,
    ) -> tuple[list[StreamInfo], int]:
        """Streams with their positions and times, those ``where`` keeps, sorted by ``sort_by``
        (``createdAt``: the order they were made): one page of them, and how many there are.
        Unfiltered in creation order, a page costs its own streams; any filter or other order
        walks every stream id of the store, and a filter on positions or dates, or an order by
        them, reads every stream's fields too (in pipelined chunks)."""
        k = keys_of(store)
        await self.head(store)
        check = where or StreamCheck()
        if check.keeps_all and sort_by == "createdAt":
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(k.streams)
                pipe.zrank(k.streams, DCB_STREAM)
                total, dcb = await call(pipe.execute())
            start = offset
            if dcb is not None:  # (the DCB stream is left out: the page slides past it)
                total -= 1
                if (total - dcb if descending else dcb) <= offset:
                    start += 1
            page = self._redis.zrange(k.streams, start, start + limit, desc=descending)
            ids = [sid for sid in await call(page) if sid != DCB_STREAM][:limit]
            return await self._streams(k, ids), total
        fields = check.reads_fields or sort_by in ("updatedAt", "streamPosition")
        kept: list[str] = []
        infos: list[StreamInfo] = []
        async for chunk in self._stream_ids(k, check.stream_id):
            ids = [sid for sid in chunk if sid != DCB_STREAM and check.keeps_id(sid)]
            if fields:
                infos += [s for s in await self._streams(k, ids) if check.keeps(s)]
            else:
                kept += ids
        if not fields:
            if sort_by == "streamId":
                kept.sort()
            if descending:
                kept.reverse()
            return await self._streams(k, kept[offset : offset + limit]), len(kept)
        if sort_by != "createdAt":  # the walk's order; the others sort (stably) by their field
            infos.sort(key=STREAM_ORDER[sort_by])
        if descending:
            infos.reverse()
        return infos[offset : offset + limit], len(infos)

    async def _stream_ids(self, k: StoreKeys, only: str | None) -> AsyncIterator[list[str]]:
        """The store's stream ids in creation order, in chunks (or just ``only`` if it exists)."""
        if only is not None:
            if await call(self._redis.zscore(k.streams, only)) is not None:
                yield [only]
            return
        start = 0
        while True:
            ids = await call(self._redis.zrange(k.streams, start, start + SCAN_PAGE - 1))
            if not ids:
                return
            yield ids
            start += len(ids)

    async def _streams(self, k: StoreKeys, ids: list[str]) -> list[StreamInfo]:
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.llen(k.stream(sid))
            pipe.hmget(k.offsets, ids)
            pipe.hmget(k.stream_created, ids)
            pipe.hmget(k.stream_updated, ids)
            replies = await call(pipe.execute())
        lengths = replies[: len(ids)]
        offsets, created, updated = replies[len(ids) :]
        return [
            StreamInfo(sid, int(n) + int(o or 0) - 1, c or "", u or "")
            for sid, n, o, c, u in zip(ids, lengths, offsets, created, updated, strict=True)
        ]

    # -- queries -------------------------------------------------------------------------------

    async def query(
        self,
        store: str,
        *,
        flt: Filter | None,
        from_position: int | None = None,
        to_position: int | None = None,
        limit: int = 100,
        offset: int = 0,
        direction: Direction = "forward",
        include_count: bool = False,
        event_id: str | None = None,
        transaction_id: str | None = None,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
        from_stream_position: int | None = None,
        to_stream_position: int | None = None,
    ) -> Page:
        """Events of the whole store matching ``flt`` with globalPosition in
        [from_position, to_position], sorted by position in ``direction``, paginated; also, when
        given, with that eventId or transactionId and created in [from_date, to_date] (checked
        per event: ``broker.query``). Dates first narrow the positions read through the time
        index (``first_at``), so a date-bounded query reads about the events of its period.
        With ``flt.stream_id`` the query walks that stream's index, between the stream positions
        given (inclusive), and the page carries the stream's version."""
        await self.head(store)  # not found -> StoreNotFound
        low = max(from_position or 1, 1)
        high = to_position
        if from_date is not None:
            low = max(low, await self.first_at(store, from_date))
        if to_date is not None:
            # The first event created after the period, allowing for pods' clocks to disagree:
            # an event is stamped by the clock of the pod that appended it.
            if to_date < datetime.max.replace(tzinfo=to_date.tzinfo) - CLOCK_SKEW:
                after = await self.first_kept_at(store, to_date + CLOCK_SKEW) - 1
                high = after if high is None else min(high, after)
            # (else the end of time: nothing is created after it, every position may match)
        check = EventCheck(
            flt,
            event_id=event_id,
            transaction_id=transaction_id,
            from_date=from_date,
            to_date=to_date,
        )
        walk = _Walk(
            low,
            high,
            direction,
            (from_stream_position, to_stream_position),
            page=min(SCAN_PAGE, offset + limit + 1),  # often all the query needs
        )
        matched: list[LoggedEvent] = []
        total = 0
        has_more = False
        truncated: int | None = None
        async for piece in self._candidates(store, flt, walk):
            truncated = truncated or piece.truncated_before
            for event in piece.events:
                if not check.keeps(event):
                    if check.finished:
                        break
                    continue
                if offset <= total < offset + limit:
                    matched.append(event)
                elif total >= offset + limit:
                    has_more = True
                total += 1
                if check.finished:
                    break
            if check.finished or (has_more and not include_count):
                break
        return Page(
            matched,
            has_more,
            total if include_count else None,
            truncated,
            stream_version=walk.stream_version,
            stream_truncated_before=walk.stream_truncated_before,
        )

    async def _candidates(
        self, store: str, flt: Filter | None, walk: _Walk
    ) -> AsyncIterator[Slice]:
        low, high, direction = walk.low, walk.high, walk.direction
        if flt is None or flt.stream_id is None:
            after = low - 1 if direction == "forward" else (0 if high is None else high + 1)
            until = high if direction == "forward" else low
            async for piece in self.scan(store, after=after, until=until, direction=direction):
                yield piece
            return
        # One stream: walk it by stream position, keeping what lies in [low, high].
        first, last_wanted = walk.stream_range
        cursor: int | None = None
        while True:
            if direction == "forward":
                start = (first or 0) if cursor is None else cursor + 1
                part = await self.read_stream(
                    store, flt.stream_id, start=start, end=last_wanted, limit=walk.page
                )
            else:
                begin = last_wanted if cursor is None else cursor - 1
                if begin is not None and begin < (first or 0):
                    return
                part = await self.read_stream(
                    store,
                    flt.stream_id,
                    direction="backward",
                    start=begin,
                    end=first,
                    limit=walk.page,
                )
            walk.page = SCAN_PAGE
            if cursor is None:
                walk.stream_version = part.version
                walk.stream_truncated_before = part.truncated_before
                # The stream as of this version: later pages leave out what is appended meanwhile.
                top = part.version - 1
                last_wanted = top if last_wanted is None else min(last_wanted, top)
                if not part.events and part.truncated_before is not None:
                    # Every event the stream had is gone: the query still says history before
                    # the store's oldest kept position is (when it starts below it).
                    gone = await self.gone_before(store, low - 1)
                    if gone is not None:
                        yield Slice([], gone)
            if not part.events:
                return
            inside = [
                e
                for e in part.events
                if e.global_position >= low and (high is None or e.global_position <= high)
            ]
            gone = None
            if part.truncated_before is not None:
                # The stream's history before its first kept event is gone: a query from below
                # that event's globalPosition says so, as a query of the whole store does.
                gone = next(
                    (
                        e.global_position
                        for e in part.events
                        if _stream_position(e) == part.truncated_before
                    ),
                    None,
                )
                if gone is not None and gone <= low:
                    gone = None
            yield Slice(inside, gone)
            last = part.events[-1].global_position
            if (direction == "forward" and high is not None and last > high) or (
                direction == "backward" and last < low
            ):
                return
            cursor = _stream_position(part.events[-1])

    # -- time ----------------------------------------------------------------------------------

    async def first_at(self, store: str, moment: datetime) -> int:
        """The position of the first event created at or after ``moment`` (head + 1 if none yet).
        The time index (one entry per second) narrows it down; at most a second of events is
        read to find the exact one, in pages growing from a few events.

        History that is gone counts: when the first such event kept is the oldest kept, and
        history before it was deleted (retention), events as late as ``moment`` may have been
        deleted with it, so the answer is 1, the start of the store: a subscription starting
        there is told ``truncated``, a REST read carries ``truncatedBefore``, rather than
        starting at the oldest kept event as if nothing had been asked of what is gone."""
        found, oldest = await self._first_kept_at(store, moment)
        return 1 if found == oldest > 1 else found

    async def first_kept_at(self, store: str, moment: datetime) -> int:
        """The position of the first kept event created at or after ``moment`` (head + 1 if
        none yet): where an end (``toDate``) or retention's cut falls, not a start."""
        return (await self._first_kept_at(store, moment))[0]

    async def _first_kept_at(self, store: str, moment: datetime) -> tuple[int, int]:
        """(the first kept position at or after ``moment``, the oldest kept position)."""
        k = keys_of(store)
        ms = int(moment.timestamp() * 1000)
        bucket = await call(
            self._redis.zrange(k.times, ms, "-inf", byscore=True, desc=True, offset=0, num=1)
        )
        bounds = await self.bounds(store)
        start = int(bucket[0]) if bucket else bounds.low
        if not bucket and self.archive is not None:
            archived = await self._archived(store, bounds.uid)
            if archived is not None:
                found = await self.archive.first_at(archived, moment)
                if found is not None and found < bounds.low:
                    return found, bounds.oldest
        start = max(start, bounds.oldest)
        cutoff = moment.timestamp()
        page = 16  # the event is usually near the second's start: read little first
        while True:
            piece = await self.after(store, start - 1, page)
            if not piece.events:
                return start, bounds.oldest
            for event in piece.events:
                if codec.created_at_of(event.json).timestamp() >= cutoff:
                    return event.global_position, bounds.oldest
            start = piece.events[-1].global_position + 1
            page = min(page * 4, SCAN_PAGE)


@dataclass(slots=True)
class _Walk:
    """The range one query reads, and what it learnt of its stream on the way."""

    low: int
    high: int | None
    direction: Direction
    stream_range: tuple[int | None, int | None]
    """Stream positions (inclusive; None: unbounded) when the query walks one stream."""
    page: int = SCAN_PAGE
    """How many events of the stream its next read asks for."""
    stream_version: int | None = None
    stream_truncated_before: int | None = None


def _position(entry: list[Any]) -> int:
    return int(entry[0].partition("-")[0])


def _stream_position(event: LoggedEvent) -> int:
    """The streamPosition an event's JSON starts with (``codec.positioned``)."""
    text = event.json
    start = text.index('"streamPosition":') + 17
    return int(text[start : text.index(",", start)])


def entry_event(entry: list[Any]) -> LoggedEvent:
    """A raw log entry ``[id, ["s", stream, "t", type, "p", streamPosition, ("g", tags,) "e",
    body]]`` (fields in the order scripts/lib/write.lua writes them): the event's JSON is its
    positions, then its body. Entries of the first format, ``["s", stream, "t", type, "e",
    json]``, already hold the whole JSON."""
    entry_id, fields = entry
    position = entry_id.partition("-")[0]
    if len(fields) >= 8:
        text = codec.positioned(position, fields[5], fields[-1])
    else:
        text = fields[5]
    return LoggedEvent(int(position), fields[1], fields[3], text)
