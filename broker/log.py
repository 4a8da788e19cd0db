"""The event log of every store: append, read a stream, query the store, list streams.

Layout (keys in ``broker.keys``): the store's log is a Redis Stream whose entry ``g-0`` is the event
with globalPosition ``g`` (fields ``s`` stream id, ``t`` type, ``e`` event JSON); each stream has a
list of its events' globalPositions, so streamPosition ``k`` is list index ``k``. The append script
(``scripts/append.lua``) is the only writer.
"""

from __future__ import annotations

import bisect
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import codec
from .errors import EventTooLarge, InvalidEvent, NotReplicated, StoreNotFound, VersionConflict
from .filters import Filter
from .keys import StoreKeys, valid_store_name
from .redis import call, load_script, returns_raw_entries, sharded
from .types import (
    AppendResult,
    Direction,
    ExpectedVersion,
    LoggedEvent,
    NewEvent,
    Page,
    StreamInfo,
    now_iso,
)

SCAN_PAGE = 1000
MAX_EVENT_BYTES = 1024 * 1024
ANNOUNCEMENT_ARG = 9
"""Index in append.lua's ARGV (0-based here) of the announcement's tail."""


# RFC 9562 section 5.4: the version nibble (byte 6) is 4, the variant bits (byte 8) are 10.
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


def uuid4_batch(n: int) -> list[str]:
    """n random (version 4) UUIDs in canonical text form from one ``os.urandom`` call.

    Formatted from one hex string: building ``uuid.UUID`` objects cost ~1.4 us per event, 40%
    of an append's Python time (py-spy on bench/append.py's broker phase)."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-"
        f"{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def keys_of(store: str) -> StoreKeys:
    """Keys of an existing store; a name that could never be a store is simply not found."""
    if not valid_store_name(store):
        raise StoreNotFound(store)
    return StoreKeys(store)


@dataclass(frozen=True, slots=True)
class LogLimits:
    max_event_bytes: int = MAX_EVENT_BYTES
    idempotency_ttl: int = 24 * 3600


class EventLog:
    """Appends and reads events. Safe to share between tasks; holds no per-request state."""

    def __init__(
        self,
        redis: Any,
        *,
        limits: LogLimits | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        if not returns_raw_entries(redis):
            raise TypeError(
                "EventLog reads log entries raw: give it a client from broker.connect()"
            )
        self._redis = redis
        self._limits = limits or LogLimits()
        self._publish = "SPUBLISH" if sharded(redis) else "PUBLISH"
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._append = load_script(redis, "append")
        self._read_stream = load_script(redis, "read_stream")

    # -- writing -----------------------------------------------------------------------------

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
        transaction_id = str(uuid.uuid4())
        created_at = now_iso()
        args: list[Any] = [
            str(expected),
            stream_id,
            created_at,
            str(uuid.uuid4()) if auto_create else "",
            k.channel,
            self._publish,
            self._limits.idempotency_ttl if idempotency_key else 0,
            transaction_id,
            int(time.time() * 1000),
            b"",  # the announcement's tail, below
        ]
        announced: list[bytes] = []
        event_ids = uuid4_batch(len(events))
        for index, event in enumerate(events):
            try:
                data = codec.encode_payload(event.data)
                metadata = None if event.metadata is None else codec.encode_payload(event.metadata)
            except codec.JSONEncodeError as exc:
                reason = f"data or metadata cannot be stored as JSON: {exc}"
                raise InvalidEvent(
                    f"event {index}: {reason}", {"field": f"events.{index}", "message": reason}
                ) from None
            size = len(data) + (len(metadata) if metadata is not None else 0)
            if size > self._limits.max_event_bytes:
                raise EventTooLarge(
                    f"event {index} has {size} bytes of data and metadata; the limit is "
                    f"{self._limits.max_event_bytes}",
                    {"index": index, "size": size, "limit": self._limits.max_event_bytes},
                )
            body = codec.event_body(
                event,
                data=data,
                metadata=metadata,
                stream_id=stream_id,
                event_id=event_ids[index],
                transaction_id=transaction_id,
                created_at=created_at,
            )
            args.append(event.type)
            args.append(body)
            announced.append(event.type.encode())
            announced.append(body)
        # Joined here rather than in the script: Redis is the one shared CPU of a deployment.
        args[ANNOUNCEMENT_ARG] = codec.SEPARATOR_BYTES.join(announced)
        idem = k.idempotency(idempotency_key) if idempotency_key else k.meta
        script_keys = [
            k.meta,
            k.log,
            k.stream(stream_id),
            k.streams,
            k.stream_created,
            k.stream_updated,
            idem,
        ]
        if not self._wait_replicas:
            reply = await call(self._append(keys=script_keys, args=args))
            return self._append_result(store, stream_id, expected, reply, transaction_id)
        # WAIT counts the writes of its own connection, so it rides the script's pipeline.
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._append(keys=script_keys, args=args, client=pipe)  # queues EVALSHA
            pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)
            reply, replicas = await call(pipe.execute())
        result = self._append_result(store, stream_id, expected, reply, transaction_id)
        if int(replicas) < self._wait_replicas and not result.replayed:
            raise NotReplicated(
                f"appended, but only {replicas} of {self._wait_replicas} replicas confirmed "
                "in time; retry with the same idempotency key to confirm",
                {
                    "written": True,
                    "replicas": int(replicas),
                    "globalPosition": result.last_position,
                },
            )
        return result

    @staticmethod
    def _append_result(
        store: str, stream_id: str, expected: ExpectedVersion, reply: list[Any], txid: str
    ) -> AppendResult:
        kind = reply[0]
        if kind == "ok":
            first, last, version = int(reply[1]), int(reply[2]), int(reply[3])
            return AppendResult(
                stream_id,
                first,
                last,
                version,
                last - first + 1,
                txid,
                created_store=bool(int(reply[4])),
            )
        if kind == "conflict":
            raise VersionConflict(stream_id, expected, int(reply[1]))
        if kind == "nostore":
            raise StoreNotFound(store)
        # An idempotent replay: the record the first append left.
        status, rest = reply[1].split("|", 1)
        if status == "409":
            first_expected, current, first_stream = rest.split("|", 2)
            was: ExpectedVersion = (
                int(first_expected) if first_expected.lstrip("-").isdigit() else first_expected  # type: ignore[assignment]
            )
            raise VersionConflict(first_stream, was, int(current))
        first_s, last_s, version_s, first_txid, first_stream = rest.split("|", 4)
        first, last = int(first_s), int(last_s)
        return AppendResult(
            first_stream, first, last, int(version_s), last - first + 1, first_txid, replayed=True
        )

    # -- reading -----------------------------------------------------------------------------

    async def head(self, store: str) -> int:
        """The store's last globalPosition (0 when empty). Raises StoreNotFound."""
        k = keys_of(store)
        head = await call(self._redis.hget(k.meta, "head"))
        if head is None:
            raise StoreNotFound(store)
        return int(head)

    async def exists(self, store: str) -> bool:
        return valid_store_name(store) and bool(
            await call(self._redis.exists(StoreKeys(store).meta))
        )

    async def read_stream(
        self,
        store: str,
        stream_id: str,
        *,
        direction: Direction = "forward",
        start: int | None = None,
        end: int | None = None,
        limit: int = 1000,
    ) -> tuple[list[LoggedEvent], int]:
        """Events of one stream between stream positions ``start`` and ``end`` (inclusive), in
        ``direction`` order, at most ``limit``; and the stream's current version."""
        k = keys_of(store)
        if direction == "forward":
            lo = start if start is not None else 0
            hi = lo + limit - 1 if end is None else min(end, lo + limit - 1)
        else:
            # LRANGE cannot count from the end of a range: find the stream's end, trim here. A
            # start past the end reads backward from the last event.
            version = await call(self._redis.llen(k.stream(stream_id)))
            hi = version - 1 if start is None else min(start, version - 1)
            lo = max(end if end is not None else 0, hi - limit + 1)
        if hi < lo:
            await self.head(store)
            return [], await call(self._redis.llen(k.stream(stream_id)))
        reply = await call(self._read_stream(keys=[k.stream(stream_id), k.log], args=[lo, hi]))
        version = int(reply[0])
        events = [_logged(entry) for entry in reply[1:]]
        if version == 0 and not await self.exists(store):
            raise StoreNotFound(store)
        if direction == "backward":
            events.reverse()
        return events, version

    async def scan(
        self,
        store: str,
        *,
        after: int = 0,
        until: int | None = None,
        direction: Direction = "forward",
        page: int = SCAN_PAGE,
    ) -> AsyncIterator[list[LoggedEvent]]:
        """The store's log in pages of at most ``page`` events, positions in (after, until]
        forward, or [.., until] backward from ``after`` (exclusive) downwards."""
        k = keys_of(store)
        if direction == "forward":
            low = f"{after + 1}-0"
            high = "+" if until is None else f"{until}-0"
            while True:
                entries = await call(self._redis.xrange(k.log, low, high, count=page))
                if not entries:
                    return
                yield [_logged(entry) for entry in entries]
                if len(entries) < page:
                    return
                low = "(" + entries[-1][0]
        else:
            high = "+" if after == 0 else f"({after}-0"
            low = "-" if until is None else f"{until}-0"
            while True:
                entries = await call(self._redis.xrevrange(k.log, high, low, count=page))
                if not entries:
                    return
                yield [_logged(entry) for entry in entries]
                if len(entries) < page:
                    return
                high = "(" + entries[-1][0]

    async def read_after(self, store: str, after: int, limit: int) -> list[LoggedEvent]:
        """Up to ``limit`` events with globalPosition > ``after``: one page of catch-up."""
        k = keys_of(store)
        entries = await call(self._redis.xrange(k.log, f"{after + 1}-0", "+", count=limit))
        return [_logged(entry) for entry in entries]

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
    ) -> Page:
        """Events of the whole store matching ``flt`` with globalPosition in
        [from_position, to_position], sorted by position in ``direction``, paginated."""
        await self.head(store)  # not found -> StoreNotFound
        low = max(from_position or 1, 1)
        matched: list[LoggedEvent] = []
        total = 0
        has_more = False
        async for batch in self._candidates(store, flt, low, to_position, direction):
            for event in batch:
                if flt is not None and not flt.matches(event.stream_id, event.type):
                    continue
                if offset <= total < offset + limit:
                    matched.append(event)
                elif total >= offset + limit:
                    has_more = True
                total += 1
            if has_more and not include_count:
                break
        return Page(matched, has_more, total if include_count else None)

    async def _candidates(
        self, store: str, flt: Filter | None, low: int, high: int | None, direction: Direction
    ) -> AsyncIterator[list[LoggedEvent]]:
        if flt is None or flt.stream_id is None:
            after = low - 1 if direction == "forward" else (0 if high is None else high + 1)
            until = high if direction == "forward" else low
            async for batch in self.scan(store, after=after, until=until, direction=direction):
                yield batch
            return
        # One stream: its index says which positions to look at.
        k = keys_of(store)
        positions = [int(p) for p in await call(self._redis.lrange(k.stream(flt.stream_id), 0, -1))]
        lo_i = bisect.bisect_left(positions, low)
        hi_i = len(positions) if high is None else bisect.bisect_right(positions, high)
        if lo_i >= hi_i:
            return
        indexes = range(lo_i, hi_i) if direction == "forward" else range(hi_i - 1, lo_i - 1, -1)
        for chunk_start in range(0, len(indexes), SCAN_PAGE):
            chunk = indexes[chunk_start : chunk_start + SCAN_PAGE]
            first, last = min(chunk[0], chunk[-1]), max(chunk[0], chunk[-1])
            events, _ = await self.read_stream(
                store, flt.stream_id, start=first, end=last, limit=last - first + 1
            )
            if direction == "backward":
                events.reverse()
            yield events

    async def list_streams(
        self, store: str, *, limit: int = 100, offset: int = 0, prefix: str | None = None
    ) -> tuple[list[StreamInfo], int]:
        """Streams in the order they were created, with their positions and times."""
        k = keys_of(store)
        await self.head(store)
        if prefix:
            # Searching walks the stream ids; fine for the admin listing this serves.
            all_ids = await call(self._redis.zrange(k.streams, 0, -1))
            ids = [s for s in all_ids if prefix.lower() in s.lower()]
            total = len(ids)
            ids = ids[offset : offset + limit]
        else:
            total = await call(self._redis.zcard(k.streams))
            ids = await call(self._redis.zrange(k.streams, offset, offset + limit - 1))
        if not ids:
            return [], total
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.llen(k.stream(sid))
            pipe.hmget(k.stream_created, ids)
            pipe.hmget(k.stream_updated, ids)
            replies = await call(pipe.execute())
        versions, created, updated = replies[: len(ids)], replies[-2], replies[-1]
        return [
            StreamInfo(sid, int(v) - 1, c or "", u or "")
            for sid, v, c, u in zip(ids, versions, created, updated, strict=True)
        ], total


def _logged(entry: list[Any]) -> LoggedEvent:
    """A raw log entry ``[id, ["s", stream, "t", type, "p", streamPosition, "e", body]]``
    (fields in the order the append script writes them): the event's JSON is its positions,
    then its body. Entries of the first format, ``["s", stream, "t", type, "e", json]``,
    already hold the whole JSON."""
    entry_id, fields = entry
    position = entry_id.partition("-")[0]
    if len(fields) == 8:
        text = codec.positioned(position, fields[5], fields[7])
    else:
        text = fields[5]
    return LoggedEvent(int(position), fields[1], fields[3], text)
