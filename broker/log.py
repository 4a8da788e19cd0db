"""The event log of every store: appends (and, through ``LogReader``, every read).

Layout (keys in ``broker.keys``): the store's log is a Redis Stream whose entry ``g-0`` is the event
with globalPosition ``g`` (fields ``s`` stream id, ``t`` type, ``p`` stream position, ``e`` the
event's JSON after its positions); each stream has a list of its events' globalPositions, so
streamPosition ``offset + k`` is list index ``k``. Every append runs one script whose writing
half is ``scripts/lib/write.lua`` (one stream, several streams atomically, or a DCB append with
its condition checked in the same step); ``broker.lifecycle`` moves old events to the archive.

Size: ~650 lines: one class per store's log with every append form (one stream, several,
DCB) and the pages they share; the Lua halves live in scripts/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import codec
from .archive import Archive
from .errors import (
    ConditionFailed,
    EventTooLarge,
    InvalidEvent,
    NotReplicated,
    StoreNotFound,
    Unavailable,
    VersionConflict,
)
from .filters import Query
from .keys import DCB_STREAM
from .reader import LogReader, entry_event, keys_of
from .redis import call, load_script, returns_raw_entries, run_script, sharded
from .types import (
    AppendResult,
    ExpectedVersion,
    LoggedEvent,
    NewEvent,
    iso_at,
)

SCAN_PAGE = 1000
MAX_EVENT_BYTES = 1024 * 1024
DCB_RETRIES = 20
DCB_BUDGET = 1000
"""The most index candidates one DCB script call examines (lib/dcb.lua: positions read from the
type and tag lists, each checked against its log entry when the lists alone do not decide), plus
one per item. Redis runs one script at a time and answers no one meanwhile: a query or condition
with more candidates than this takes several calls, and Redis serves other clients between them.
A black-box probe's single walk (8 items of 100,000 candidates each) had blocked every tenant for
4.5 s, and another tenant's append got BUSY. Measured on the 2-core dev host with that walk's
shape (8 x 50,000): 6-9 ms of Redis a call at 1000 (near Redis's default slowlog threshold of
10 ms), 4.0 s for the whole walk; at 500, 5.1 s (each call searches its lists again)."""
MAX_CONFLICTS = 100
"""The most conflicting positions a failed DCB append names (the first ones after ``after``)."""


_HEX_AT = [j for j in range(36) if j not in (8, 13, 18, 23)]
"""Where the 32 hex digits of a UUID stand in its canonical text (8-4-4-4-12)."""

# RFC 9562 section 5.4: the version nibble (byte 6) is 4, the variant bits (byte 8) are 10.
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


def _expected_of(text: str) -> ExpectedVersion:
    """An expected version as a script's reply or record gives it back (text)."""
    return int(text) if text.lstrip("-").isdigit() else text  # type: ignore[return-value]


def uuid4_batch(n: int) -> bytes:
    """n random (version 4) UUIDs in canonical text form, 36 bytes each, from one ``os.urandom``
    call.

    The hex digits are put in place by 32 strided copies across the batch rather than one
    formatted string per id: building ``uuid.UUID`` objects cost ~1.4 us per event, 40% of an
    append's Python time, and a formatted string per id still ~0.4 us (py-spy and timeit on
    bench/append.py's broker phase)."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    digits = raw.hex().encode()
    text = bytearray(b"-" * (36 * n))
    for at, j in enumerate(_HEX_AT):
        text[j::36] = digits[at::32]
    return bytes(text)


class Fresh(NamedTuple):
    """What a new append makes up before it is sent."""

    transaction_id: str
    created_at: str
    """ISO 8601, as the events' ``createdAt``."""
    now_ms: int
    """The same instant in epoch milliseconds."""
    store_uid: str
    """The uid of the store, if this append creates it."""
    event_ids: bytes
    """One id per event of the append, in order: canonical UUID text, 36 bytes each."""


MAX_IDEMPOTENCY_TTL = 30 * 86400
"""The longest an idempotency key may be remembered (30 days). The append scripts set its record
after writing the events (the record holds their positions), so Redis must never refuse that
``SET ... EX``: a TTL it cannot take (past its integer range, or a float) would fail the script
half-way, the events written and the key not recorded (a 500, and a retry appending them again).
Checked here, where the limits are built, before any script runs."""


@dataclass(frozen=True, slots=True)
class LogLimits:
    max_event_bytes: int = MAX_EVENT_BYTES
    idempotency_ttl: int = 24 * 3600

    def __post_init__(self) -> None:
        ttl = self.idempotency_ttl
        if not isinstance(ttl, int) or not 1 <= ttl <= MAX_IDEMPOTENCY_TTL:
            raise ValueError(f"idempotency_ttl is 1 to {MAX_IDEMPOTENCY_TTL} seconds, not {ttl!r}")


class EventLog(LogReader):
    """Appends and reads events. Safe to share between tasks; holds no per-request state."""

    def __init__(
        self,
        redis: Any,
        *,
        limits: LogLimits | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
        archive: Archive | None = None,
    ) -> None:
        if not returns_raw_entries(redis):
            raise TypeError(
                "EventLog reads log entries raw: give it a client from broker.connect()"
            )
        super().__init__(redis, archive)
        self._limits = limits or LogLimits()
        self._publish = "SPUBLISH" if sharded(redis) else "PUBLISH"
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._append = load_script(redis, "append", "write")
        self._append_streams = load_script(redis, "streams_append", "write")
        self._append_dcb = load_script(redis, "dcb_append", "write", "dcb")
        self._dcb_query = load_script(redis, "dcb_query", "dcb")

    # -- encoding ------------------------------------------------------------------------------

    def _encode(
        self,
        events: Sequence[NewEvent],
        stream_id: str,
        fresh: Fresh,
        base: int = 0,
    ) -> tuple[tuple[bytes, int, str], list[bytes]]:
        """The script's arguments for ``events``: the announcement's tail (type and body per
        event, joined), their number and their tags (``events_of`` in scripts/lib/write.lua reads
        them); and the bodies. ``base``: the index of the first of them in the request (for error
        messages and their event ids)."""
        ids = fresh.event_ids[36 * base : 36 * (base + len(events))]
        encoder = codec.EventBodies(stream_id, fresh.transaction_id, fresh.created_at)
        limit = self._limits.max_event_bytes
        try:
            # Joined by the client rather than in the script: Redis is the one shared CPU of a
            # deployment (joining in the script instead raised its time per event by 10-30%).
            tail, bodies, tagged = encoder.encode(events, ids, limit)
        except codec.Unstorable as exc:
            index = base + exc.index
            if exc.reason:
                raise InvalidEvent(
                    f"event {index}: {exc.reason}",
                    {"field": f"events.{index}", "message": exc.reason},
                ) from None
            raise EventTooLarge(
                f"event {index} has {exc.size} bytes of data and metadata; the limit is {limit}",
                {"index": index, "size": exc.size, "limit": limit},
            ) from None
        tags = codec.SEPARATOR.join([",".join(e.tags) for e in events]) if tagged else ""
        return (tail, len(events), tags), bodies

    @staticmethod
    def _fresh(count: int) -> Fresh:
        """What a new append of ``count`` events makes up: every id from one batch."""
        now = time.time()
        ids = uuid4_batch(count + 2)
        return Fresh(ids[:36].decode(), iso_at(now), int(now * 1000), ids[36:72].decode(), ids[72:])

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> tuple[Any, int | None]:
        """Run an append script; with ``wait_replicas``, WAIT for them on the same connection (it
        counts that connection's writes). The reply, and the replicas that confirmed (or None)."""
        if not self._wait_replicas:
            return await call(run_script(self._redis, script, keys, args)), None
        async with self._redis.pipeline(transaction=False) as pipe:
            await script(keys=keys, args=args, client=pipe)  # queues EVALSHA
            pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)
            reply, replicas = await call(pipe.execute())
        return reply, int(replicas)

    def _check_replicas(self, replicas: int | None, replayed: bool, position: int) -> None:
        if replicas is not None and replicas < self._wait_replicas and not replayed:
            raise NotReplicated(
                f"appended, but only {replicas} of {self._wait_replicas} replicas confirmed "
                "in time; retry with the same idempotency key to confirm",
                {"written": True, "replicas": replicas, "globalPosition": position},
            )

    # -- one stream ----------------------------------------------------------------------------

    async def append(
        self,
        store: str,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected: ExpectedVersion = "any",
        idempotency_key: str | None = None,
        auto_create: bool = False,
    ) -> AppendResult:
        """Append ``events`` to ``stream_id``, all or nothing, publishing them for live delivery.

        Raises VersionConflict, StoreNotFound, EventTooLarge or Unavailable. With an
        idempotency key seen in the last 24 h for this store, nothing is written and the first
        append's result (or conflict) comes back.
        """
        k = keys_of(store)
        if not events:
            raise ValueError("an append needs at least one event")
        fresh = self._fresh(len(events))
        txid = fresh.transaction_id
        (tail, n, tags), bodies = self._encode(events, stream_id, fresh)
        args: list[Any] = [
            str(expected),
            stream_id,
            fresh.created_at,
            fresh.store_uid if auto_create else "",
            k.channel,
            self._publish,
            self._limits.idempotency_ttl if idempotency_key else 0,
            txid,
            fresh.now_ms,
            tail,
            k.stream_prefix,
            k.type_prefix,
            k.tag_prefix,
            n,
            tags,
        ]
        idem = k.idempotency(idempotency_key) if idempotency_key else k.meta
        script_keys = [
            k.meta,
            k.log,
            k.stream(stream_id),
            k.streams,
            k.stream_created,
            k.stream_updated,
            idem,
            k.times,
            k.offsets,
        ]
        reply, replicas = await self._run(self._append, script_keys, args)
        result = await self._append_result(store, stream_id, expected, reply, txid, events, bodies)
        self._check_replicas(replicas, result.replayed, result.last_position)
        return result

    async def _append_result(
        self,
        store: str,
        stream_id: str,
        expected: ExpectedVersion,
        reply: list[Any],
        txid: str,
        events: Sequence[NewEvent],
        bodies: list[bytes],
    ) -> AppendResult:
        kind = reply[0]
        if kind == "ok":
            first, last, version = int(reply[1]), int(reply[2]), int(reply[3])
            return self._made(stream_id, first, last, version, txid, events, bodies, int(reply[4]))
        if kind == "conflict":
            raise VersionConflict(stream_id, expected, int(reply[1]))
        if kind == "nostore":
            raise StoreNotFound(store)
        # An idempotent replay: the record the first append left.
        status, _, rest = reply[1].partition("|")
        if status == "409":
            first_expected, current, first_stream = rest.split("|", 2)
            raise VersionConflict(first_stream, _expected_of(first_expected), int(current))
        if status != "201":
            raise _other_kind()
        first_s, last_s, version_s, first_txid, first_stream = rest.split("|", 4)
        return await self._replayed(store, first_stream, first_s, last_s, version_s, first_txid)

    def _made(
        self,
        stream_id: str,
        first: int,
        last: int,
        version: int,
        txid: str,
        events: Sequence[NewEvent],
        bodies: list[bytes],
        created: int,
    ) -> AppendResult:
        """The result of ``events`` just written as ``bodies``: ``version`` is the stream's
        after them."""
        n = last - first + 1
        written = codec.AppendedEvents(first, stream_id, version - n, events, bodies)
        return AppendResult(
            stream_id, first, last, version, n, txid, created_store=bool(created), events=written
        )

    async def _replayed(
        self, store: str, stream_id: str, first_s: str, last_s: str, version_s: str, txid: str
    ) -> AppendResult:
        """The result of an earlier append an idempotency key matched, from its record."""
        first, last = int(first_s), int(last_s)
        events = tuple(await self._events_between(store, first, last))
        return AppendResult(
            stream_id, first, last, int(version_s), last - first + 1, txid, True, events=events
        )

    async def _events_between(self, store: str, first: int, last: int) -> list[LoggedEvent]:
        """Events first..last as the log holds them now (for a replayed append's answer)."""
        events: list[LoggedEvent] = []
        cursor = first - 1
        while cursor < last:
            piece = await self.after(store, cursor, min(SCAN_PAGE, last - cursor), last)
            if not piece.events:
                break  # gone since (retention): answer with what is kept
            events += piece.events
            cursor = piece.events[-1].global_position
        return events

    # -- several streams -----------------------------------------------------------------------

    async def append_streams(
        self,
        store: str,
        parts: Sequence[tuple[str, Sequence[NewEvent], ExpectedVersion]],
        *,
        idempotency_key: str | None = None,
        auto_create: bool = False,
    ) -> tuple[AppendResult, ...]:
        """Append to several streams at once: all or nothing, one transactionId. Each part is
        (streamId, events, expected version); a stream named twice continues from its earlier
        part. Raises VersionConflict naming the stream, StoreNotFound, EventTooLarge."""
        k = keys_of(store)
        if not parts or any(not events for _, events, _ in parts):
            raise ValueError("an append needs at least one event per stream")
        fresh = self._fresh(sum(len(events) for _, events, _ in parts))
        txid = fresh.transaction_id
        heads: list[Any] = []
        writes: list[list[bytes]] = []
        base = 0
        for stream_id, events, expected in parts:
            (tail, n, tags), bodies = self._encode(events, stream_id, fresh, base)
            heads += (stream_id, str(expected), n, tail, tags)
            writes.append(bodies)
            base += len(events)
        args = [
            fresh.created_at,
            fresh.store_uid if auto_create else "",
            k.channel,
            self._publish,
            self._limits.idempotency_ttl if idempotency_key else 0,
            txid,
            fresh.now_ms,
            k.stream_prefix,
            k.type_prefix,
            k.tag_prefix,
            len(parts),
            *heads,
        ]
        idem = k.idempotency(idempotency_key) if idempotency_key else k.meta
        script_keys = [
            k.meta,
            k.log,
            k.streams,
            k.stream_created,
            k.stream_updated,
            idem,
            k.times,
            k.offsets,
        ]
        reply, replicas = await self._run(self._append_streams, script_keys, args)
        results = await self._streams_result(store, reply, txid, parts, writes)
        self._check_replicas(replicas, results[0].replayed, results[-1].last_position)
        return results

    async def _streams_result(
        self,
        store: str,
        reply: list[Any],
        txid: str,
        parts: Sequence[tuple[str, Sequence[NewEvent], ExpectedVersion]],
        writes: list[list[bytes]],
    ) -> tuple[AppendResult, ...]:
        kind = reply[0]
        if kind == "nostore":
            raise StoreNotFound(store)
        if kind == "conflict":
            raise VersionConflict(reply[1], _expected_of(reply[2]), int(reply[3]))
        if kind == "ok":
            created = int(reply[1])
            out = []
            for i, ((stream_id, events, _), bodies) in enumerate(zip(parts, writes, strict=True)):
                first, last, version = (int(v) for v in reply[2 + 3 * i : 5 + 3 * i])
                made = self._made(stream_id, first, last, version, txid, events, bodies, created)
                out.append(made)
            return tuple(out)
        record = reply[1]
        if record.startswith("409\x1f"):
            _, stream_id, expected, current = record.split("\x1f", 3)
            raise VersionConflict(stream_id, _expected_of(expected), int(current))
        if not record.startswith("M\x1f"):
            raise _other_kind()
        first_txid, *streams = record[2:].split("\x1e")
        out = []
        for item in streams:
            stream_id, first_s, last_s, version_s = item.split("\x1f")
            out.append(
                await self._replayed(store, stream_id, first_s, last_s, version_s, first_txid)
            )
        return tuple(out)

    # -- DCB -----------------------------------------------------------------------------------

    async def append_dcb(
        self,
        store: str,
        events: Sequence[NewEvent],
        *,
        condition: Query | None = None,
        after: int | None = None,
        idempotency_key: str | None = None,
        auto_create: bool = False,
    ) -> AppendResult:
        """A DCB append (docs/dcb.md): ``events`` go to the reserved stream ``__dcb__`` unless an
        event after ``after`` (all events when None) matches ``condition``; the check and the
        append are one atomic step. Raises ConditionFailed with the matching positions. With an
        idempotency key seen in the last 24 h for this store, nothing is written and the first
        append's result (or condition failure) comes back."""
        k = keys_of(store)
        if not events:
            raise ValueError("an append needs at least one event")
        fresh = self._fresh(len(events))
        txid = fresh.transaction_id
        (tail, n, tags), bodies = self._encode(events, DCB_STREAM, fresh)
        items = [] if condition is None else _items_args(condition)
        start = after or 0
        checked = 0
        found: list[int] = []
        for attempt in range(DCB_RETRIES):
            if condition is not None and attempt:
                # The script could not decide alone (part of the range left Redis, or holds more
                # candidates than one call examines): check on outside the atomic step.
                checked, found = await self._precheck(store, condition, start, checked)
            args = [
                fresh.created_at,
                fresh.store_uid if auto_create else "",
                k.channel,
                self._publish,
                txid,
                fresh.now_ms,
                k.stream_prefix,
                k.type_prefix,
                k.tag_prefix,
                DCB_STREAM,
                start,
                checked,
                DCB_BUDGET,
                MAX_CONFLICTS,
                ",".join(map(str, found)),
                len(items) // 2,
                *items,
                tail,
                n,
                tags,
                self._limits.idempotency_ttl if idempotency_key else 0,
            ]
            script_keys = [
                k.meta,
                k.log,
                k.streams,
                k.stream_created,
                k.stream_updated,
                k.times,
                k.offsets,
                k.idempotency(idempotency_key) if idempotency_key else k.meta,
            ]
            reply, replicas = await self._run(self._append_dcb, script_keys, args)
            kind = reply[0]
            if kind == "retry":
                # Retention moved events out of Redis since the archive was checked, or appends
                # raced in beyond what one call examines: (start, reply[1]] is checked.
                checked = max(checked, int(reply[1]))
                continue
            if kind == "nostore":
                raise StoreNotFound(store)
            if kind == "conflict":
                raise ConditionFailed([int(p) for p in reply[1:]], after)
            if kind == "ahead":
                raise ConditionFailed([], after, head=int(reply[1]))
            if kind == "replay":
                result = await self._dcb_replayed(store, reply[1])
                self._check_replicas(replicas, True, result.last_position)
                return result
            first, last, before = int(reply[1]), int(reply[2]), int(reply[3])
            self._check_replicas(replicas, False, last)
            version = before + (last - first + 1)
            return self._made(DCB_STREAM, first, last, version, txid, events, bodies, 0)
        raise Unavailable(
            "the DCB condition could not be checked: retention kept moving events, or appends "
            "kept racing in"
        )

    async def _dcb_replayed(self, store: str, record: str) -> AppendResult:
        """The first outcome of a DCB append an idempotency key matched (its record: see
        scripts/dcb_append.lua): its result, or its ConditionFailed again."""
        kind, _, rest = record.partition("\x1f")
        if kind == "C":
            after, positions = rest.split("\x1f")
            raise ConditionFailed([int(p) for p in positions.split(",")], int(after))
        if kind != "D":
            raise _other_kind()
        txid, first, last, before = rest.split("\x1f")
        version = str(int(before) + int(last) - int(first) + 1)
        return await self._replayed(store, DCB_STREAM, first, last, version, txid)

    async def _precheck(
        self, store: str, condition: Query, after: int, checked: int
    ) -> tuple[int, list[int]]:
        """Check ``condition`` from ``checked`` (or ``after``) up to the store's head as it is
        when this starts, outside the append's atomic step: the archived part in PostgreSQL,
        then Redis's in calls of at most DCB_BUDGET candidates each. Events never change and
        positions only grow, so a range checked once stays checked (retention only deletes,
        which cannot make a match): the atomic step then checks only what lies above. Returns
        how far the check got with nothing matching, and the first matches after ``after`` (at
        most MAX_CONFLICTS; any fails the append)."""
        items = _items_args(condition)
        cursor, found = await self._archived_matches(store, condition, max(after, checked))
        if found:
            return cursor, found  # archived matches alone fail the append (as they always did)
        goal: int | None = None
        while len(found) < MAX_CONFLICTS:
            head, low, reached, *positions = await self._dcb_call(
                store, items, cursor, MAX_CONFLICTS - len(found), entries=False
            )
            if int(low) - 1 > cursor:
                if found:
                    break  # enough to fail the append
                # Retention moved what lay past the cursor to the archive meanwhile.
                cursor, found = await self._archived_matches(store, condition, cursor)
                if found:
                    break
                continue
            found += [int(p) for p in positions]
            cursor = int(reached)
            goal = int(head) if goal is None else goal
            # Matches are named as one step would: the first MAX_CONFLICTS up to the head.
            if cursor >= (int(head) if found else goal):
                break
        return cursor, found

    async def _archived_matches(
        self, store: str, condition: Query, after: int
    ) -> tuple[int, list[int]]:
        """The archived part of a check from ``after``: events Redis no longer holds. Returns the
        position up to which it is checked (what the rest must find still in Redis above it) and
        the first matches there (at most MAX_CONFLICTS)."""
        bounds = await self.bounds(store)
        below = bounds.low - 1
        if below <= after:
            return after, []
        archived = await self._archived(store, bounds.uid)
        if archived is not None and self.archive is not None:
            found = await self.archive.dcb_positions(
                archived, condition, after, below, MAX_CONFLICTS
            )
            return below, found
        return below, []  # without an archive, what lies below Redis is gone: nothing to match

    async def dcb_query(
        self, store: str, query: Query, *, after: int = 0, limit: int = 1000
    ) -> tuple[list[LoggedEvent], int]:
        """Events after ``after`` matching ``query``, ascending, at most ``limit``; and
        DeltaBase's ``lastPosition``: the position of the last event returned (``after`` when
        none matched), what a DCB append's ``after`` should be to act on this answer.

        Redis's part is read in calls of at most DCB_BUDGET candidates each. Should retention
        move events past the one being read from to the archive meanwhile, the query starts
        over (they would be missed)."""
        items = _items_args(query)
        for _ in range(DCB_RETRIES):
            bounds = await self.bounds(store)
            events: list[LoggedEvent] = []
            if bounds.low - 1 > after and self.archive is not None:
                archived = await self._archived(store, bounds.uid)
                if archived is not None:
                    events = await self.archive.dcb_events(
                        archived, query, after, bounds.low - 1, limit + 1
                    )
            if await self._redis_matches(store, items, max(after, bounds.low - 1), limit, events):
                events = events[:limit]
                return events, events[-1].global_position if events else after
        raise Unavailable("the DCB query could not be read: retention kept moving events")

    async def _dcb_call(
        self, store: str, items: list[str], after: int, limit: int, *, entries: bool
    ) -> list[Any]:
        """One call of scripts/dcb_query.lua: [head, low, reached, match...], at most ``limit``
        matches after ``after``, each its log entry (``entries``) or its position."""
        k = keys_of(store)
        return await call(
            self._dcb_query(
                keys=[k.meta, k.log],
                args=[
                    k.type_prefix,
                    k.tag_prefix,
                    after,
                    limit,
                    DCB_BUDGET,
                    1 if entries else 0,
                    len(items) // 2,
                    *items,
                ],
            )
        )

    async def _redis_matches(
        self, store: str, items: list[str], after: int, limit: int, events: list[LoggedEvent]
    ) -> bool:
        """Add to ``events`` Redis's events after ``after`` matching ``items`` until there are
        ``limit``, reading on from where each call stopped. False if retention moved events past
        the one read from meanwhile (``events`` then misses some)."""
        cursor = after
        while len(events) < limit:
            head, low, reached, *entries = await self._dcb_call(
                store, items, cursor, limit - len(events), entries=True
            )
            if int(low) - 1 > cursor:
                return False
            events += [entry_event(entry) for entry in entries]
            cursor = int(reached)
            if cursor >= int(head):
                break
        return True


def _other_kind() -> InvalidEvent:
    """An idempotency key whose record is another kind of append's (stream, several streams,
    DCB: they share the store's keys)."""
    return InvalidEvent(
        "this idempotency key was used for another kind of append",
        {"field": "idempotencyKey", "message": "used for another kind of append"},
    )


def _items_args(query: Query) -> list[str]:
    """A query's items as the scripts read them: types joined by US (types may hold commas),
    tags by ','."""
    out: list[str] = []
    for item in query.items:
        out += ("\x1f".join(item.types), ",".join(item.tags))
    return out
