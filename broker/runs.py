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
import sys
from array import array
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
CHUNK = 256 * 1024
"""About how many bytes of a copy's data are joined into one piece (``Runs.chunks``). asyncpg
copies a COPY source given whole into a buffer of its own before it sends it, so a page joined
whole was held twice (peak RSS of a 300,000-event copy: 68 MiB, against 60 in pieces); each
piece goes out as its own CopyData message, as soon as the connection takes it. No faster or
slower (four alternating pairs of a 1,000,000-event copy)."""
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
TAG = struct.Struct(">H")


def block_start(position: int) -> int:
    """The first position of the block holding ``position`` (positions start at 1)."""
    return (position - 1) // BLOCK * BLOCK + 1


def layout(count: int) -> str:
    """``events`` of a run of ``count`` events, column by column: positions, times created
    (microseconds since 2000-01-01 UTC), type indexes, tag counts, body lengths; then one tag
    index per tag the events carry, in event order (``>H`` each)."""
    return f">{count}q{count}q{count}H{count}H{count}I"


@dataclass(slots=True)
class Run:
    """One run being built."""

    stream_id: bytes
    stream_position: int
    positions: list[int] = field(default_factory=list)
    created: list[int] = field(default_factory=list)
    """Each event's time created; with ``created_column``, only the least and the greatest."""
    created_column: bytes | None = None
    """The times created as the ``events`` column holds them (big-endian int8 each), if the
    maker had them so (``broker.archiver``: an append's events share one, packed once)."""
    kinds: list[int] = field(default_factory=list)
    tag_counts: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    tagged: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    types: dict[bytes, int] = field(default_factory=dict)
    tags: dict[bytes, int] = field(default_factory=dict)

    def events(self, earliest: int | None = None) -> bytes:
        """The ``events`` column (``layout``), a column at a time (``big_endian``); ``earliest``
        is ``min(created)`` if known."""
        count = len(self.positions)
        if earliest is None:
            earliest = min(self.created)
        events = b"".join(
            (
                big_endian("Q", self.positions),  # positions start at 1
                self.created_column
                if self.created_column is not None
                else big_endian("Q" if earliest >= 0 else "q", self.created),
                big_endian("H", self.kinds) if any(self.kinds) else bytes(2 * count),
                big_endian("H", self.tag_counts) if any(self.tag_counts) else bytes(2 * count),
                big_endian("I", self.lengths),
            )
        )
        if self.tagged:
            events += big_endian("H", self.tagged)
        return events

    def row(self, store_id: int) -> list[bytes]:
        """The run as a binary COPY row: its fields, then its bodies one by one (joined once,
        with the other rows of its piece, by ``Runs.chunks``)."""
        count = len(self.positions)
        earliest = min(self.created)
        events = self.events(earliest)
        return [
            HEAD.pack(12, 4, store_id, 8, self.positions[0], 8),
            INT8_THEN_LENGTH.pack(self.positions[-1], len(self.stream_id)),
            self.stream_id,
            MIDDLE.pack(8, self.stream_position, 4, count, 8, earliest, 8, max(self.created)),
            text_array(list(self.types)),
            text_array(list(self.tags)) if self.tags else NULL,
            LENGTH.pack(len(events)),
            events,
            LENGTH.pack(sum(self.lengths)),
            *self.bodies,
        ]


class Runs:
    """A copy's rows: added event by event in position order (``add``) or a run at a time
    (``extend``), then ``runs()`` (what they hold) and ``chunks()``."""

    def __init__(self, store_id: int) -> None:
        self._store_id = store_id
        self._done: list[Run] = []
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
        if run is None or stream_position != run.stream_position + len(run.positions):
            if run is not None:  # not the stream's next event (a log never has that): a new run
                self._done.append(run)
            run = self._open[stream_id] = Run(stream_id, stream_position)
        self.events += 1
        run.positions.append(position)
        run.created.append(created)
        type_index = run.types.get(kind)
        if type_index is None:
            type_index = run.types[kind] = len(run.types)
        run.kinds.append(type_index)
        run.lengths.append(len(body))
        run.bodies.append(body)
        run.tag_counts.append(len(tags))
        for tag in tags:
            index = run.tags.get(tag)
            if index is None:
                index = run.tags[tag] = len(run.tags)
            run.tagged.append(index)

    def extend(self, run: Run) -> None:
        """A whole run, built a column at a time."""
        self.events += len(run.positions)
        self._done.append(run)

    def _close_block(self) -> None:
        self._done += self._open.values()
        self._open = {}

    def runs(self) -> list[Run]:
        """Every run added (since the last ``take``)."""
        self._close_block()
        return self._done

    def take(self) -> list[Run]:
        """Every run added since the last ``take``, given up: a maker that writes its rows as
        it goes (``Pieces``) takes them block by block."""
        done = self.runs()
        self._done = []
        return done

    def chunks(self, size: int = CHUNK) -> list[bytes]:
        """Every run added, as one binary COPY in pieces (``Pieces``)."""
        pieces = Pieces(self._store_id, size)
        for run in self.runs():
            pieces.add(run)
        return pieces.done()


class Pieces:
    """Runs written as one binary COPY in pieces of whole rows, as they come: each piece ends
    with the row that brings its bodies to ``size`` bytes or more, the last holds what is left
    (the first starts with the header, the last ends with the trailer)."""

    __slots__ = ("_held", "_out", "_pieces", "_size", "_store_id")

    def __init__(self, store_id: int, size: int = CHUNK) -> None:
        self._store_id = store_id
        self._size = size
        self._pieces: list[bytes] = []
        self._out = [HEADER]
        self._held = 0

    def add(self, run: Run) -> None:
        self._out += run.row(self._store_id)
        self._held += sum(run.lengths)
        if self._held >= self._size:
            self._pieces.append(b"".join(self._out))
            self._out, self._held = [], 0

    def done(self) -> list[bytes]:
        """The pieces, the last one ended."""
        self._out.append(TRAILER)
        self._pieces.append(b"".join(self._out))
        self._out = []
        return self._pieces


def big_endian(code: str, values: Any) -> bytes:
    """Integers as one column of ``code`` (``Q``, ``q``, ``I`` or ``H``), big-endian: a
    fraction of the instructions of one ``struct.pack`` of every value (and ``Q`` of ``q``'s,
    which parses each item as a function's argument)."""
    column = array(code, values)
    if LITTLE_ENDIAN:
        column.byteswap()
    return column.tobytes()


LITTLE_ENDIAN = sys.byteorder == "little"
assert [array(code).itemsize for code in "QqIH"] == [8, 8, 4, 2]


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
    """A run's events (``row``: a record with ``stream_position``, ``count``, ``types``, ``tags``,
    ``events`` and ``bodies``), in position order."""
    types, tags = row["types"], row["tags"] or ()
    events, bodies = row["events"], row["bodies"]
    count = row["count"]
    columns = struct.unpack_from(layout(count), events)
    positions, created = columns[:count], columns[count : 2 * count]
    kinds, tag_counts = columns[2 * count : 3 * count], columns[3 * count : 4 * count]
    lengths = columns[4 * count :]
    tagged = events[struct.calcsize(layout(count)) :]
    stream_position = row["stream_position"]
    start = offset = 0
    for i in range(count):
        named: tuple[str, ...] = ()
        if tag_counts[i]:
            end = offset + 2 * tag_counts[i]
            named = tuple(tags[j] for (j,) in TAG.iter_unpack(tagged[offset:end]))
            offset = end
        end = start + lengths[i]
        yield Event(
            positions[i],
            stream_position + i,
            types[kinds[i]],
            named,
            created[i],
            bodies[start:end].decode(),
        )
        start = end


def encode_row(store_id: int, stream_id: str, events: list[Event]) -> dict[str, Any]:
    """A run's columns holding ``events`` (consecutive events of one stream and block, as
    ``decode`` gave them), for a row written again with fewer events."""
    built = Runs(store_id)
    name = stream_id.encode()
    for e in events:
        built.add(
            e.position,
            name,
            e.stream_position,
            e.type.encode(),
            e.created,
            [t.encode() for t in e.tags],
            e.body.encode(),
        )
    (run,) = built.runs()
    return {
        "first_position": run.positions[0],
        "last_position": run.positions[-1],
        "stream_position": run.stream_position,
        "count": len(run.positions),
        "created_min": min(run.created),
        "created_max": max(run.created),
        "types": [t.decode() for t in run.types],
        "tags": [t.decode() for t in run.tags] or None,
        "events": run.events(),
        "bodies": b"".join(run.bodies),
    }
