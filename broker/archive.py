"""The archive: the cold part of every store's log, in PostgreSQL (``DELTAGATE_ARCHIVE_URL``).

Redis holds the hot end of each log; ``broker.lifecycle`` copies events here, in order, and only
then lets them leave Redis; ``broker.reader`` reads here what Redis no longer holds. Invariants
(the archive boundary): ``docs/lifecycle.md``.

Layout (created on first connect, idempotently)::

    deltagate_stores  (id serial, uid text unique, name text)   one row per store *incarnation*:
                      a store deleted and created again under its name has a new uid, so its
                      old events can never be read as the new store's
    deltagate_events  (store_id, position) primary key; stream_id, stream_position, type,
                      created_at, body (the event's JSON after its positions, exactly as the
                      Redis log holds it, so reads pass it through without decoding)

Copies are idempotent without ``ON CONFLICT``: one store is copied by one pod at a time (its
lifecycle lease), always from the archive's own highest position on, so a crash between the
commit and the bookkeeping in Redis repeats nothing and skips nothing; if two pods ever overlap
(a lease that expired under a slow copy) the primary key refuses the second copy, which then
starts again from the archive's highest position.

Every call is bounded by ``timeout``; an archive that cannot be reached raises ``Unavailable``
(a read answers 503, a replay waits and retries, archiving pauses).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from . import codec
from .errors import Unavailable
from .filters import Query
from .types import LoggedEvent

log = logging.getLogger("deltagate.archive")

SCHEMA = """
CREATE TABLE IF NOT EXISTS deltagate_stores (
    id      serial PRIMARY KEY,
    uid     text NOT NULL UNIQUE,
    name    text NOT NULL
);
CREATE TABLE IF NOT EXISTS deltagate_events (
    store_id        integer NOT NULL,
    position        bigint  NOT NULL,
    stream_id       text    NOT NULL,
    stream_position bigint  NOT NULL,
    type            text    NOT NULL,
    created_at      timestamptz NOT NULL,
    body            text    NOT NULL,
    tags            text[],
    PRIMARY KEY (store_id, position)
);
CREATE INDEX IF NOT EXISTS deltagate_events_stream
    ON deltagate_events (store_id, stream_id, stream_position);
CREATE INDEX IF NOT EXISTS deltagate_events_time
    ON deltagate_events USING brin (store_id, created_at);
CREATE INDEX IF NOT EXISTS deltagate_events_type
    ON deltagate_events (store_id, type, position);
CREATE INDEX IF NOT EXISTS deltagate_events_tags
    ON deltagate_events USING gin (tags) WHERE tags IS NOT NULL;
"""
"""The created_at index is BRIN: events arrive in time order, so a block range summary answers
"the first event at or after T" and retention's "events older than D days" at a fraction of a
b-tree's size and write cost. The type and tag indexes serve DCB conditions and queries over
archived history (``dcb_positions``, ``dcb_events``) as Redis's type and tag lists do for the hot
end."""

COLUMNS = (
    "store_id",
    "position",
    "stream_id",
    "stream_position",
    "type",
    "created_at",
    "body",
    "tags",
)
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
            low, high = await conn.fetchrow(
                "SELECT min(position), max(position) FROM deltagate_events WHERE store_id = $1",
                store,
            )
        if low is None:
            return StoreStats(0, None, None)
        return StoreStats(int(high) - int(low) + 1, int(low), int(high))

    async def table_bytes(self) -> int:
        """The events table with its indexes, on disk (all stores)."""
        async with self._conn() as conn:
            size = await conn.fetchval("SELECT pg_total_relation_size('deltagate_events')")
        return int(size)

    # -- writing ------------------------------------------------------------------------------

    async def highest(self, store: int) -> int:
        """The highest position archived for a store (0: none)."""
        async with self._conn() as conn:
            found = await conn.fetchval(
                "SELECT max(position) FROM deltagate_events WHERE store_id = $1", store
            )
        return int(found or 0)

    async def copy_binary(self, data: bytes) -> None:
        """Copy rows in PostgreSQL's binary COPY format (a whole stream: header, rows with the
        fields of ``COLUMNS`` in that order, trailer; ``broker.archiver`` makes it), all or
        none: one COPY statement is one transaction (no BEGIN and COMMIT around it: two round
        trips per page, which a loaded host turns into waiting). Raises
        ``asyncpg.UniqueViolationError`` if another copy got there first."""
        async with self._conn() as conn:
            await conn.copy_to_table(
                "deltagate_events",
                source=memoryview(data),  # bytes would be taken for a file's path
                columns=COLUMNS,
                format="binary",
                timeout=self._timeout,
            )

    async def delete_before(self, store: int, position: int, batch: int) -> int:
        """Delete up to ``batch`` of the store's oldest events below ``position``; how many."""
        return (await self.delete_returning(store, position, batch))[0]

    async def delete_returning(self, store: int, position: int, batch: int) -> tuple[int, int]:
        """Like ``delete_before``; also the bytes of the bodies deleted."""
        async with self._conn() as conn:
            count, size = await conn.fetchrow(
                "WITH gone AS (DELETE FROM deltagate_events WHERE store_id = $1 AND position IN ("
                " SELECT position FROM deltagate_events WHERE store_id = $1 AND position < $2"
                " ORDER BY position LIMIT $3) RETURNING octet_length(body) AS size)"
                " SELECT count(*), coalesce(sum(size), 0) FROM gone",
                store,
                position,
                batch,
            )
        return int(count), int(size)

    # -- reading ------------------------------------------------------------------------------

    async def after(self, store: int, after: int, until: int, limit: int) -> list[LoggedEvent]:
        """Events with positions in (after, until], ascending, at most ``limit``.

        A store's archived positions are consecutive (retention deletes only the oldest), so
        the page is asked for as the ``limit`` positions after ``after``: a range whose size
        the planner knows. Asked as "the first ``limit`` of (after, until]", a table freshly
        copied into (no statistics yet) was read by a bitmap scan of the whole range and a
        sort, page after page: a replay of 100,000 archived events took 2.8x as long as from
        Redis. Only if retention deleted that range meanwhile is the open range asked for."""
        top = min(until, after + limit)
        rows = await self._fetch(_AFTER, store, after, top, limit)
        if not rows and top < until:
            rows = await self._fetch(_AFTER, store, after, until, limit)
        return [_logged(r) for r in rows]

    async def before(self, store: int, high: int, low: int, limit: int) -> list[LoggedEvent]:
        """Events with positions in [low, high], descending, at most ``limit`` (asked for as
        ``after`` asks)."""
        bottom = max(low, high - limit + 1)
        rows = await self._fetch(_BEFORE, store, bottom, high, limit)
        if len(rows) < limit and bottom > low:
            rows = await self._fetch(_BEFORE, store, low, high, limit)
        return [_logged(r) for r in rows]

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._conn() as conn:
            return list(await conn.fetch(query, *args))

    async def stream(
        self, store: int, stream_id: str, low: int, high: int, *, descending: bool = False
    ) -> list[LoggedEvent]:
        """One stream's events with stream positions in [low, high]."""
        order = "DESC" if descending else "ASC"
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT position, stream_id, stream_position, type, body FROM deltagate_events"
                " WHERE store_id = $1 AND stream_id = $2"
                " AND stream_position >= $3 AND stream_position <= $4"
                f" ORDER BY stream_position {order}",
                store,
                stream_id,
                low,
                high,
            )
        return [_logged(r) for r in rows]

    async def first_at(self, store: int, moment: datetime) -> int | None:
        """The position of the first archived event created at or after ``moment``."""
        async with self._conn() as conn:
            found = await conn.fetchval(
                "SELECT min(position) FROM deltagate_events"
                " WHERE store_id = $1 AND created_at >= $2",
                store,
                moment.astimezone(UTC),
            )
        return None if found is None else int(found)

    async def dcb_positions(
        self, store: int, query: Query, after: int, below: int, limit: int
    ) -> list[int]:
        """Positions in (after, below] matching a DCB query, ascending, at most ``limit``."""
        where, params = _dcb_where(query, 5)
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT position FROM deltagate_events WHERE store_id = $1 AND position > $2"
                f" AND position <= $3 AND ({where}) ORDER BY position LIMIT $4",
                store,
                after,
                below,
                limit,
                *params,
            )
        return [int(r[0]) for r in rows]

    async def dcb_events(
        self, store: int, query: Query, after: int, below: int, limit: int
    ) -> list[LoggedEvent]:
        """Events in (after, below] matching a DCB query, ascending, at most ``limit``."""
        where, params = _dcb_where(query, 5)
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT position, stream_id, stream_position, type, body FROM deltagate_events"
                " WHERE store_id = $1 AND position > $2 AND position <= $3"
                f" AND ({where}) ORDER BY position LIMIT $4",
                store,
                after,
                below,
                limit,
                *params,
            )
        return [_logged(r) for r in rows]

    async def bytes_between(self, store: int, low: int, high: int) -> int:
        """Bytes of the events' JSON bodies with positions in [low, high]."""
        async with self._conn() as conn:
            found = await conn.fetchval(
                "SELECT coalesce(sum(octet_length(body)), 0) FROM deltagate_events"
                " WHERE store_id = $1 AND position >= $2 AND position <= $3",
                store,
                low,
                high,
            )
        return int(found)


async def _keep_session(conn: Any) -> None:
    """The pool's reset of a connection it takes back. asyncpg's default sends ``SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` each time, a round trip per
    archive call (per replay page, per copied page) for state deltagate never sets: no advisory
    locks, LISTEN, SET or cursors. A transaction left open is still rolled back by the pool."""


_AFTER = (
    "SELECT position, stream_id, stream_position, type, body FROM deltagate_events"
    " WHERE store_id = $1 AND position > $2 AND position <= $3 ORDER BY position LIMIT $4"
)
_BEFORE = (
    "SELECT position, stream_id, stream_position, type, body FROM deltagate_events"
    " WHERE store_id = $1 AND position >= $2 AND position <= $3"
    " ORDER BY position DESC LIMIT $4"
)


def _dcb_where(query: Query, first: int) -> tuple[str, list[Any]]:
    """A query's items as SQL (items OR; types OR and tags AND within an item), with its
    parameters numbered from ``$first``."""
    clauses, params = [], []
    for item in query.items:
        parts = []
        if item.types:
            params.append(list(item.types))
            parts.append(f"type = ANY(${first + len(params) - 1})")
        if item.tags:
            params.append(list(item.tags))
            parts.append(f"tags @> ${first + len(params) - 1}")
        clauses.append("(" + " AND ".join(parts) + ")")
    return " OR ".join(clauses), params


def _logged(row: Any) -> LoggedEvent:
    position, stream_id, stream_position, kind, body = row
    return LoggedEvent(position, stream_id, kind, codec.positioned(position, stream_position, body))
