"""The archive: the cold part of every store's log, in PostgreSQL (``DELTAGATE_ARCHIVE_URL``).

Redis holds the hot end of each log; ``broker.lifecycle`` copies events here, in order, and only
then lets them leave Redis; ``broker.reader`` reads here what Redis no longer holds. Invariants
(the archive boundary, the archive's rows): ``docs/lifecycle.md``.

Layout (created on first connect, idempotently)::

    deltagate_stores  (id serial, uid text unique, name text, archived bigint)  one row per store
                      *incarnation*: a store deleted and created again under its name has a new
                      uid, so its old events can never be read as the new store's; ``archived``:
                      the highest position copied (0: none), moved in the copy's transaction
    deltagate_runs    (store_id, first_position) primary key: the events of one stream within one
                      block of 1,024 positions, written by one copy (``broker.runs``), with the
                      stream's first position in the run, the count, the range of creation times,
                      the types and tags the run holds, and per event its position, time, type,
                      tags and body (the event's JSON after its positions, exactly as the Redis
                      log holds it, so reads pass it through without decoding)

Why runs and not a row per event: a row per event costs PostgreSQL a heap tuple and an entry in
each of its indexes (position, stream, type, tags), 6-10 us of CPU per event on the bench host,
more than Redis and the append together, so the copy could not keep up with the appends. A run
holds every event of its stream in its block (as many as the stream had there), so the indexes
grow by a run, not an event: the stream index by one entry per stream and block, the position
index likewise, the type and tag indexes (GIN over the run's lists) by its distinct values. Reads
find runs through those indexes and keep only the events asked for (a run's type and tag lists
say what it may hold; its events say exactly).

Copies are idempotent: one store is copied by one pod at a time (its lifecycle lease), always
after the store's ``archived``, and a copy is refused whole in its own transaction unless it starts
after ``archived`` (the row locked ``FOR UPDATE`` meanwhile), so a crash between the commit and the
bookkeeping in Redis repeats nothing and skips nothing, and two pods that overlap (a lease that
expired under a slow copy) can never both write a position.

Every call is bounded by ``timeout``; an archive that cannot be reached raises ``Unavailable``
(a read answers 503, a replay waits and retries, archiving pauses).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from . import codec, runs
from .errors import BrokerError, Unavailable
from .filters import Query
from .types import LoggedEvent

log = logging.getLogger("deltagate.archive")

SCHEMA = """
CREATE TABLE IF NOT EXISTS deltagate_stores (
    id      serial PRIMARY KEY,
    uid     text NOT NULL UNIQUE,
    name    text NOT NULL
);
ALTER TABLE deltagate_stores ADD COLUMN IF NOT EXISTS archived bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS deltagate_runs (
    store_id        integer NOT NULL,
    first_position  bigint  NOT NULL,
    last_position   bigint  NOT NULL,
    stream_id       text COLLATE "C" NOT NULL,
    stream_position bigint  NOT NULL,
    count           integer NOT NULL,
    created_min     timestamptz NOT NULL,
    created_max     timestamptz NOT NULL,
    types           text[] COLLATE "C" NOT NULL,
    tags            text[] COLLATE "C",
    events          bytea NOT NULL,
    bodies          bytea NOT NULL,
    PRIMARY KEY (store_id, first_position)
);
CREATE INDEX IF NOT EXISTS deltagate_runs_stream
    ON deltagate_runs (store_id, stream_id, stream_position);
CREATE INDEX IF NOT EXISTS deltagate_runs_time
    ON deltagate_runs USING brin (store_id, created_max);
CREATE INDEX IF NOT EXISTS deltagate_runs_types ON deltagate_runs USING gin (types);
CREATE INDEX IF NOT EXISTS deltagate_runs_tags
    ON deltagate_runs USING gin (tags) WHERE tags IS NOT NULL;
"""
"""Stream ids, types and tags compare as bytes (``COLLATE "C"``): no locale's rules in the indexes'
every comparison. The time index is BRIN: events arrive in time order, so a block range summary
answers "the first run holding an event at or after T" at a fraction of a b-tree's size and
write cost."""

COLUMNS = runs.COLUMNS
RUN_COLUMNS = "first_position, stream_id, stream_position, count, types, tags, events, bodies"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
)


@dataclass(frozen=True, slots=True)
class StoreStats:
    events: int
    oldest: int | None
    newest: int | None


class Archive:
    """The archive's connection pool, opened on first use (and again after a failure to open
    it), so a pod starts, serves Redis-held history and keeps appending while PostgreSQL is
    away. ``close()`` when done."""

    def __init__(self, url: str, *, seconds: float = 5.0, max_size: int = 10) -> None:
        self._url = url
        self._timeout = seconds
        self._max_size = max_size
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._ids: dict[str, int] = {}

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _open(self) -> Any:
        async with self._opening:
            if self._pool is None:
                pool = await asyncio.wait_for(
                    asyncpg.create_pool(
                        self._url,
                        min_size=1,
                        max_size=self._max_size,
                        command_timeout=self._timeout,
                        timeout=self._timeout,
                        reset=_keep_session,
                    ),
                    self._timeout,
                )
                try:
                    async with pool.acquire(timeout=self._timeout) as conn:
                        await conn.execute(SCHEMA)
                        await _compress_with_lz4(conn)
                        await _convert_rows_per_event(conn)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        try:
            pool = self._pool or await self._open()
            async with pool.acquire(timeout=self._timeout) as conn:
                yield conn
        except TRANSIENT as exc:
            raise Unavailable(f"the archive is unavailable: {exc.__class__.__name__}") from exc
        except asyncpg.IntegrityConstraintViolationError:
            raise  # a copy that lost a race: the caller knows what to do
        except asyncpg.PostgresError as exc:
            # Anything else (a missing database, no permission) is an operator's to fix: say
            # what PostgreSQL said, and retry later like for an outage.
            raise Unavailable(f"the archive refused: {exc}") from exc

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    # -- stores -------------------------------------------------------------------------------

    async def store_id(self, uid: str, name: str, *, create: bool = False) -> int | None:
        """The archive's id of a store incarnation (None: it has nothing archived)."""
        known = self._ids.get(uid)
        if known is not None:
            return known
        async with self._conn() as conn:
            found = await conn.fetchval("SELECT id FROM deltagate_stores WHERE uid = $1", uid)
            if found is None and create:
                found = await conn.fetchval(
                    "INSERT INTO deltagate_stores (uid, name) VALUES ($1, $2) "
                    "ON CONFLICT (uid) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                    uid,
                    name,
                )
        if found is not None:
            self._ids[uid] = int(found)
        return None if found is None else int(found)

    async def forget(self, uid: str, batch: int = 50_000) -> None:
        """Delete everything of a store incarnation (the store was deleted), in batches."""
        store = await self.store_id(uid, "")
        if store is None:
            return
        while await self.delete_before(store, 2**62, batch):
            pass
        async with self._conn() as conn:
            await conn.execute("DELETE FROM deltagate_stores WHERE id = $1", store)
        self._ids.pop(uid, None)

    async def stats(self, store: int) -> StoreStats:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT (SELECT min(first_position) FROM deltagate_runs WHERE store_id = $1),"
                " archived FROM deltagate_stores WHERE id = $1",
                store,
            )
        if row is None or row[0] is None:
            return StoreStats(0, None, None)
        low, high = int(row[0]), int(row[1])
        return StoreStats(high - low + 1, low, high)

    async def table_bytes(self) -> int:
        """The runs table with its indexes, on disk (all stores)."""
        async with self._conn() as conn:
            size = await conn.fetchval("SELECT pg_total_relation_size('deltagate_runs')")
        return int(size)

    # -- writing ------------------------------------------------------------------------------

    async def highest(self, store: int) -> int:
        """The highest position archived for a store (0: none)."""
        async with self._conn() as conn:
            found = await conn.fetchval(
                "SELECT archived FROM deltagate_stores WHERE id = $1", store
            )
        return int(found or 0)

    async def copy(self, store: int, first: int, last: int, data: Sequence[bytes]) -> None:
        """Copy the runs of positions ``first`` to ``last`` (``data``: PostgreSQL's binary COPY
        of rows with the fields of ``COLUMNS`` in that order, in pieces; ``broker.runs`` makes
        it), all or none, and record ``last`` as the store's highest archived position, in one
        transaction. Raises ``CopyConflict`` (and writes nothing) if something at or after
        ``first`` was copied already: another pod got there first."""
        async with self._conn() as conn, conn.transaction():
            done = await conn.fetchval(
                "SELECT archived FROM deltagate_stores WHERE id = $1 FOR UPDATE", store
            )
            if done is None or done >= first:
                raise CopyConflict(f"positions from {first} on were copied already ({done})")
            await conn.copy_to_table(
                "deltagate_runs",
                source=_Pieces(data),
                columns=COLUMNS,
                format="binary",
                timeout=self._timeout,
            )
            await conn.execute(
                "UPDATE deltagate_stores SET archived = $2 WHERE id = $1", store, last
            )

    async def delete_before(self, store: int, position: int, batch: int) -> int:
        """Delete up to ``batch`` of the store's oldest events below ``position``; how many."""
        return (await self.delete_returning(store, position, batch))[0]

    async def delete_returning(self, store: int, position: int, batch: int) -> tuple[int, int]:
        """Like ``delete_before``; also the bytes of the bodies deleted. Exactly the events
        below the cut go: runs wholly below it are deleted, the few that hold it (one per
        stream in its block at most) are written again without the events before it."""
        async with self._conn() as conn, conn.transaction():
            oldest = await conn.fetchval(
                "SELECT min(first_position) FROM deltagate_runs WHERE store_id = $1", store
            )
            if oldest is None or oldest >= position:
                return 0, 0
            cut = min(position, oldest + batch)
            count, size = await conn.fetchrow(
                "WITH gone AS (DELETE FROM deltagate_runs WHERE store_id = $1"
                " AND first_position < $2 AND last_position < $2"
                " RETURNING count, octet_length(bodies) AS size)"
                " SELECT coalesce(sum(count), 0), coalesce(sum(size), 0) FROM gone",
                store,
                cut,
            )
            count, size = int(count), int(size)
            held = await conn.fetch(
                f"SELECT {RUN_COLUMNS} FROM deltagate_runs WHERE store_id = $1"
                " AND first_position >= $2 AND first_position < $3 AND last_position >= $3",
                store,
                runs.block_start(cut),
                cut,
            )
            for row in held:
                events = list(runs.decode(row))
                kept = [e for e in events if e.position >= cut]
                for e in events[: len(events) - len(kept)]:
                    count += 1
                    size += len(e.body.encode())
                new = runs.encode_row(store, row["stream_id"], kept)
                await conn.execute(
                    "UPDATE deltagate_runs SET first_position = $3, last_position = $4,"
                    " stream_position = $5, count = $6, created_min = $7, created_max = $8,"
                    " types = $9, tags = $10, events = $11, bodies = $12"
                    " WHERE store_id = $1 AND first_position = $2",
                    store,
                    row["first_position"],
                    new["first_position"],
                    new["last_position"],
                    new["stream_position"],
                    new["count"],
                    _moment(new["created_min"]),
                    _moment(new["created_max"]),
                    new["types"],
                    new["tags"],
                    new["events"],
                    new["bodies"],
                )
        return count, size

    # -- reading ------------------------------------------------------------------------------

    async def after(self, store: int, after: int, until: int, limit: int) -> list[LoggedEvent]:
        """Events with positions in (after, until], ascending, at most ``limit``.

        A store's archived positions are consecutive (retention deletes only the oldest), so
        the page is asked for as the ``limit`` positions after ``after``: the runs starting in
        their blocks. Only if retention deleted that range meanwhile is the open range asked
        for."""
        top = min(until, after + limit)
        events = await self._range(store, after, top)
        if not events and top < until:
            events = await self._range(store, after, until)
        return events[:limit]

    async def before(self, store: int, high: int, low: int, limit: int) -> list[LoggedEvent]:
        """Events with positions in [low, high], descending, at most ``limit`` (asked for as
        ``after`` asks)."""
        bottom = max(low, high - limit + 1)
        events = await self._range(store, bottom - 1, high)
        if len(events) < limit and bottom > low:
            events = await self._range(store, low - 1, high)
        events.reverse()
        return events[:limit]

    async def _range(self, store: int, after: int, top: int) -> list[LoggedEvent]:
        """The events with positions in (after, top], ascending. The runs holding them start
        in the block of ``after + 1`` or later (a run never crosses a block boundary)."""
        rows = await self._fetch(_RANGE, store, runs.block_start(after + 1), top, after)
        events = [
            _logged(row, e) for row in rows for e in runs.decode(row) if after < e.position <= top
        ]
        events.sort(key=_position)
        return events

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._conn() as conn:
            return list(await conn.fetch(query, *args))

    async def stream(
        self,
        store: int,
        stream_id: str,
        low: int,
        high: int,
        *,
        descending: bool = False,
        count: int | None = None,
    ) -> list[LoggedEvent]:
        """One stream's events with stream positions in [low, high] (the first ``count`` of
        them, when given). A stream's runs hold consecutive stream positions, at most a block's
        worth each, so those holding ``low`` on start after ``low - BLOCK``; each holds at least
        one, so ``count`` runs hold ``count`` events."""
        rows = await self._fetch(
            f"SELECT {RUN_COLUMNS} FROM deltagate_runs WHERE store_id = $1 AND stream_id = $2"
            " AND stream_position > $3 AND stream_position <= $4"
            " AND stream_position + count > $5 ORDER BY stream_position"
            + ("" if count is None else f" LIMIT {int(count)}"),
            store,
            stream_id,
            low - runs.BLOCK,
            high,
            low,
        )
        events = [
            _logged(row, e)
            for row in rows
            for e in runs.decode(row)
            if low <= e.stream_position <= high
        ]
        if count is not None:
            del events[count:]
        if descending:
            events.reverse()
        return events

    async def first_at(self, store: int, moment: datetime) -> int | None:
        """The position of the first archived event created at or after ``moment``: in the
        block of the first run holding an event that late, in one of that block's runs that
        do."""
        moment = moment.astimezone(UTC)
        async with self._conn() as conn:
            first = await conn.fetchval(
                "SELECT min(first_position) FROM deltagate_runs"
                " WHERE store_id = $1 AND created_max >= $2",
                store,
                moment,
            )
            if first is None:
                return None
            start = runs.block_start(first)
            rows = await conn.fetch(
                f"SELECT {RUN_COLUMNS} FROM deltagate_runs WHERE store_id = $1"
                " AND first_position >= $2 AND first_position < $3 AND created_max >= $4",
                store,
                start,
                start + runs.BLOCK,
                moment,
            )
        wanted = (moment - EPOCH) // timedelta(microseconds=1)
        return min(e.position for row in rows for e in runs.decode(row) if e.created >= wanted)

    async def dcb_positions(
        self, store: int, query: Query, after: int, below: int, limit: int
    ) -> list[int]:
        """Positions in (after, below] matching a DCB query, ascending, at most ``limit``."""
        return [e.position for _, e in await self._dcb(store, query, after, below, limit)]

    async def dcb_events(
        self, store: int, query: Query, after: int, below: int, limit: int
    ) -> list[LoggedEvent]:
        """Events in (after, below] matching a DCB query, ascending, at most ``limit``."""
        return [_logged(row, e) for row, e in await self._dcb(store, query, after, below, limit)]

    async def _dcb(
        self, store: int, query: Query, after: int, below: int, limit: int
    ) -> list[tuple[Any, runs.Event]]:
        """The matches, with their runs. The runs whose type and tag lists could hold a match
        are read in the order they start, a batch at a time; a match before the start of the
        last run read is final (every run not read yet starts after it)."""
        where, params = _dcb_where(query, 5)
        found: list[tuple[Any, runs.Event]] = []
        cursor = runs.block_start(after + 1) - 1
        while True:
            rows = await self._fetch(
                f"SELECT {RUN_COLUMNS} FROM deltagate_runs WHERE store_id = $1"
                " AND first_position > $2 AND first_position <= $3"
                f" AND ({where}) ORDER BY first_position LIMIT $4",
                store,
                cursor,
                below,
                DCB_BATCH,
                *params,
            )
            found += (
                (row, e)
                for row in rows
                for e in runs.decode(row)
                if after < e.position <= below and query.accepts(e.type, e.tags)
            )
            found.sort(key=_found_position)
            if len(rows) < DCB_BATCH:
                return found[:limit]
            cursor = rows[-1]["first_position"]
            settled = [m for m in found if m[1].position < cursor]
            if len(settled) >= limit:
                return settled[:limit]


DCB_BATCH = 200
"""Runs read per query of ``dcb_events``."""


async def _compress_with_lz4(conn: Any) -> None:
    """A run's events and bodies are compressed by PostgreSQL (TOAST) when they are large; lz4
    costs PostgreSQL ~40% less CPU per archived event than its default (pglz), for about the
    same size (``bench/archive.py``'s bytes per event). PostgreSQL before 14, or built without
    lz4, keeps pglz: said once, not an error."""
    try:
        methods = await conn.fetch(
            "SELECT attcompression::text FROM pg_attribute"
            " WHERE attrelid = 'deltagate_runs'::regclass AND attname IN ('events', 'bodies')"
        )
        if all(m[0] == "l" for m in methods):
            return  # set already: no lock taken on the table at every start
        await conn.execute(
            "ALTER TABLE deltagate_runs ALTER COLUMN events SET COMPRESSION lz4,"
            " ALTER COLUMN bodies SET COMPRESSION lz4"
        )
    except asyncpg.PostgresError as exc:
        log.info("archive compression stays pglz", extra={"reason": str(exc)})


async def _convert_rows_per_event(conn: Any) -> None:
    """An archive written by an earlier deltagate held a row per event (``deltagate_events``):
    its events become runs, store by store in position order, and the old table goes, in one
    transaction, so a pod killed meanwhile leaves the old table whole and the next start does it
    again; pods starting at the same time wait for the one converting (an advisory lock)."""
    if await conn.fetchval("SELECT to_regclass('deltagate_events')") is None:
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('deltagate_runs'))")
        if await conn.fetchval("SELECT to_regclass('deltagate_events')") is None:
            return  # another pod converted it while this one waited
        stores = await conn.fetch("SELECT DISTINCT store_id FROM deltagate_events")
        for (store,) in stores:
            archived = 0
            rows = runs.Runs(store)
            async for event in conn.cursor(
                "SELECT position, stream_id, stream_position, type, created_at, body, tags"
                " FROM deltagate_events WHERE store_id = $1 ORDER BY position",
                store,
                prefetch=CONVERT_BATCH,
            ):
                position, stream_id, stream_position, kind, created, body, tags = event
                rows.add(
                    position,
                    stream_id.encode(),
                    stream_position,
                    kind.encode(),
                    (created - EPOCH) // timedelta(microseconds=1),
                    [t.encode() for t in tags or ()],
                    body.encode(),
                )
                archived = position
                if rows.events == CONVERT_BATCH:
                    await _copy(conn, rows)
                    rows = runs.Runs(store)
            if rows.events:
                await _copy(conn, rows)
            await conn.execute(
                "UPDATE deltagate_stores SET archived = $2 WHERE id = $1", store, archived
            )
            log.info("archive converted to runs", extra={"archive_store": store, "to": archived})
        await conn.execute("DROP TABLE deltagate_events")


CONVERT_BATCH = 5000


async def _copy(conn: Any, rows: runs.Runs) -> None:
    source = _Pieces(rows.chunks())
    await conn.copy_to_table("deltagate_runs", source=source, columns=COLUMNS, format="binary")


class _Pieces:
    """COPY data handed to asyncpg a piece at a time (an async iterable: a ``bytes`` source would
    be taken for a path), each piece sent as one CopyData message once the connection's buffer
    has room. An iterator rather than an async generator: one that asyncpg stops reading (the
    copy failed) would be closed later by a task of the loop's own."""

    __slots__ = ("_pieces",)

    def __init__(self, data: Sequence[bytes]) -> None:
        self._pieces = iter(data)

    def __aiter__(self) -> _Pieces:
        return self

    async def __anext__(self) -> bytes:
        piece = next(self._pieces, None)
        if piece is None:
            raise StopAsyncIteration
        return piece


class CopyConflict(BrokerError):
    """A copy refused: positions it holds were copied already (by another pod)."""


def _moment(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _position(event: LoggedEvent) -> int:
    return event.global_position


def _found_position(match: tuple[Any, runs.Event]) -> int:
    return match[1].position


async def _keep_session(conn: Any) -> None:
    """The pool's reset of a connection it takes back. asyncpg's default sends ``SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` each time, a round trip per
    archive call (per replay page, per copied page) for state deltagate never sets: no advisory
    locks, LISTEN, SET or cursors. A transaction left open is still rolled back by the pool."""


_RANGE = (
    f"SELECT {RUN_COLUMNS} FROM deltagate_runs WHERE store_id = $1"
    " AND first_position >= $2 AND first_position <= $3 AND last_position > $4"
)


def _dcb_where(query: Query, first: int) -> tuple[str, list[Any]]:
    """A query's items as SQL over a run's type and tag lists (items OR; within an item, one
    of its types and all of its tags somewhere in the run), with its parameters numbered from
    ``$first``: what a run must hold to hold a match (its events say whether it does)."""
    clauses, params = [], []
    for item in query.items:
        parts = []
        if item.types:
            params.append(list(item.types))
            parts.append(f"types && ${first + len(params) - 1}")
        if item.tags:
            params.append(list(item.tags))
            parts.append(f"tags @> ${first + len(params) - 1}")
        clauses.append("(" + (" AND ".join(parts) or "true") + ")")
    return " OR ".join(clauses), params


def _logged(row: Any, event: runs.Event) -> LoggedEvent:
    return LoggedEvent(
        event.position,
        row["stream_id"],
        event.type,
        codec.positioned(event.position, event.stream_position, event.body),
    )
