"""The archive's row: a **run**, the events of one stream within one block of 1,024 positions
that one copy wrote (the layout, and why: ``broker/archive.py``; the invariants:
docs/lifecycle.md, "The archive's rows").

A run's events are consecutive in their stream (a copy reads consecutive positions, and a stream's
positions between two of its events in that range are all in it; an event that does not follow on
starts a new run), so a run records its first stream position and its count; per event it keeps
the global position, the time it was created, its type and tags (as indexes into the run's own
lists) and the length of its body, in ``events``; the bodies, as the log holds them, follow each
other in ``bodies``. A run never crosses a block boundary, so the runs holding positions from
``p`` on all start at or after ``block_start(p)``.

``Runs`` builds a copy's rows in PostgreSQL's binary COPY format (the "Binary Format" section of
the COPY reference: a signature, flags and header extension length, then per row its field count
and each field as int32 length + bytes, -1 for NULL, then -1 as the field count); ``decode`` reads
a row back.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

BLOCK = 1024
"""Positions per block: a run holds events of one block only."""

COLUMNS = (
    "store_id",
    "first_position",
    "last_position",
    "stream_id",
    "stream_position",
    "count",
    "created_min",
    "created_max",
    "types",
    "tags",
    "events",
    "bodies",
)

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"
NULL = struct.pack(">i", -1)
HEAD = struct.Struct(">hiiiqi")
"""Field count, store_id (length, value), first_position (length, value), last_position's length."""
INT8_THEN_LENGTH = struct.Struct(">qi")
"""An int8 value, then the next field's length."""
MIDDLE = struct.Struct(">iqiiiqiq")
"""stream_position (length, value), count (length, value), created_min and created_max (each
length, value)."""
ARRAY = struct.Struct(">iiiiii")
"""A text[] field's length, then its header: dimensions, has nulls, element type, size, lower
bound."""
LENGTH = struct.Struct(">i")
TEXT_OID = 25
EVENT = struct.Struct(">qqHHI")
"""Per event in ``events``: position, created (microseconds since 2000-01-01 UTC), type index,
tag count, body length; then a ``>H`` tag index per tag."""
TAG = struct.Struct(">H")


def block_start(position: int) -> int:
    """The first position of the block holding ``position`` (positions start at 1)."""
    return (position - 1) // BLOCK * BLOCK + 1


@dataclass(slots=True)
class Run:
    """One run being built."""

    first: int
    stream_position: int
    last: int = 0
    count: int = 0
    created_min: int = 0
    created_max: int = 0
    types: dict[bytes, int] = field(default_factory=dict)
    tags: dict[bytes, int] = field(default_factory=dict)
    events: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


class Runs:
    """A copy's rows, event by event in position order (``add``), then ``data()``."""

    def __init__(self, store_id: int) -> None:
        self._store_id = store_id
        self._done: list[tuple[bytes, Run]] = []
        self._open: dict[bytes, Run] = {}
        self._block_end = 0
        self.events = 0

    def add(
        self,
        position: int,
        stream_id: bytes,
        stream_position: int,
        kind: bytes,
        created: int,
        tags: list[bytes],
        body: bytes,
    ) -> None:
        if position > self._block_end:
            self._close_block()
            self._block_end = block_start(position) + BLOCK - 1
        run = self._open.get(stream_id)
        if run is None or stream_position != run.stream_position + run.count:
            if run is not None:  # not the stream's next event (a log never has that): a new run
                self._done.append((stream_id, run))
            run = self._open[stream_id] = Run(position, stream_position, created_min=created)
        run.last = position
        run.count += 1
        self.events += 1
        if created < run.created_min:
            run.created_min = created
        if created > run.created_max:
            run.created_max = created
        type_index = run.types.get(kind)
        if type_index is None:
            type_index = run.types[kind] = len(run.types)
        meta = EVENT.pack(position, created, type_index, len(tags), len(body))
        for tag in tags:
            index = run.tags.get(tag)
            if index is None:
                index = run.tags[tag] = len(run.tags)
            meta += TAG.pack(index)
        run.events.append(meta)
        run.bodies.append(body)

    def _close_block(self) -> None:
        self._done += self._open.items()
        self._open = {}

    def data(self) -> bytes:
        """Every run added, as one binary COPY."""
        self._close_block()
        out = [HEADER]
        add = out.append
        for stream_id, run in self._done:
            add(HEAD.pack(12, 4, self._store_id, 8, run.first, 8))
            add(INT8_THEN_LENGTH.pack(run.last, len(stream_id)))
            add(stream_id)
            add(
                MIDDLE.pack(
                    8, run.stream_position, 4, run.count, 8, run.created_min, 8, run.created_max
                )
            )
            add(text_array(list(run.types)))
            add(text_array(list(run.tags)) if run.tags else NULL)
            events = b"".join(run.events)
            add(LENGTH.pack(len(events)))
            add(events)
            bodies = b"".join(run.bodies)
            add(LENGTH.pack(len(bodies)))
            add(bodies)
        add(TRAILER)
        return b"".join(out)


def text_array(items: list[bytes]) -> bytes:
    """A binary text[] field (with its length)."""
    values = b"".join(LENGTH.pack(len(t)) + t for t in items)
    return ARRAY.pack(20 + len(values), 1, 0, TEXT_OID, len(items), 1) + values


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a run, read back."""

    position: int
    stream_position: int
    type: str
    tags: tuple[str, ...]
    created: int
    body: str


def decode(row: Any) -> Iterator[Event]:
    """A run's events (``row``: a record with ``stream_position``, ``types``, ``tags``,
    ``events`` and ``bodies``), in position order."""
    types, tags = row["types"], row["tags"] or ()
    events, bodies = row["events"], row["bodies"]
    stream_position = row["stream_position"]
    unpack, size = EVENT.unpack_from, EVENT.size
    offset = start = 0
    while offset < len(events):
        position, created, type_index, tag_count, length = unpack(events, offset)
        offset += size
        named: tuple[str, ...] = ()
        if tag_count:
            named = tuple(
                tags[i] for (i,) in TAG.iter_unpack(events[offset : offset + 2 * tag_count])
            )
            offset += 2 * tag_count
        yield Event(
            position,
            stream_position,
            types[type_index],
            named,
            created,
            bodies[start : start + length].decode(),
        )
        start += length
        stream_position += 1


def encode_row(store_id: int, stream_id: str, events: list[Event]) -> dict[str, Any]:
    """A run's columns holding ``events`` (consecutive events of one stream and block, as
    ``decode`` gave them), for a row rewritten with fewer events."""
    runs = Runs(store_id)
    name = stream_id.encode()
    for e in events:
        runs.add(
            e.position,
            name,
            e.stream_position,
            e.type.encode(),
            e.created,
            [t.encode() for t in e.tags],
            e.body.encode(),
        )
    ((_, run),) = runs._open.items()
    return {
        "first_position": run.first,
        "last_position": run.last,
        "stream_position": run.stream_position,
        "count": run.count,
        "created_min": run.created_min,
        "created_max": run.created_max,
        "types": [t.decode() for t in run.types],
        "tags": [t.decode() for t in run.tags] or None,
        "events": b"".join(run.events),
        "bodies": b"".join(run.bodies),
    }
