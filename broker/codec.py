"""Every byte of JSON deltagate writes or reads passes through here; the only module that imports
orjson.

An event is encoded once, when it is appended: the append script prefixes the positions it assigns
(``{"globalPosition":G,"streamPosition":S,`` + the body built here), and from then on the log,
replays, gap repair, REST responses and WebSocket frames all pass that text through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, overload

import orjson

from .types import LoggedEvent, NewEvent

JSONDecodeError = orjson.JSONDecodeError
JSONEncodeError = orjson.JSONEncodeError
SEPARATOR = "\x1f"
"""Joins the fields of a live announcement. A control character can never appear raw in compact
JSON text, and stream ids and types are validated to exclude control characters."""
SEPARATOR_BYTES = SEPARATOR.encode()


def dumps(value: Any, default: Any = None) -> bytes:
    return orjson.dumps(value, default=default)


def dumps_str(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(raw: bytes | str) -> Any:
    """Parse JSON strictly: no NaN or Infinity, valid UTF-8, nesting bounded by orjson."""
    return orjson.loads(raw)


def fragment(encoded: bytes) -> orjson.Fragment:
    return orjson.Fragment(encoded)


def encode_payload(value: dict | None) -> bytes:
    return orjson.dumps(value)


SCHEMA_VERSION_1 = b',"schemaVersion":1'


class Unstorable(Exception):
    """Event ``index`` of a batch cannot be stored: its data or metadata is not JSON
    (``reason``), or is ``size`` bytes, over the limit."""

    def __init__(self, index: int, *, reason: str = "", size: int = 0) -> None:
        super().__init__(index, reason, size)
        self.index, self.reason, self.size = index, reason, size


class Encoded(NamedTuple):
    tail: bytes
    """The announcement's tail: type and body per event, joined by ``SEPARATOR``."""
    bodies: list[bytes]
    tagged: bool
    """Whether any of the events has tags."""


class EventBodies:
    """The bodies of one append's events: each event's JSON after its leading ``{`` and
    positions, as bytes (they go to Redis as they are).

    ``{"streamId":..,"eventId":..,"type":..,"data":..,"metadata":..?,"tags":[..]?,
    "schemaVersion":..,"transactionId":..,"createdAt":..}``, exactly what ``orjson.dumps`` of
    that dict writes, joined from pieces: the stream id, transactionId and createdAt are shared
    by the whole append and encoded once, each type once. Building a dict of fragments per event
    and encoding it cost ~1.3 us an event, a third of the Python time of a 100-event append
    (py-spy on bench/append.py's broker phase); one loop over the batch here, rather than a
    call per event, saved another fifth of what was left."""

    __slots__ = ("_close", "_head", "_types")

    def __init__(self, stream_id: str, transaction_id: str, created_at: str) -> None:
        self._head = b'"streamId":' + orjson.dumps(stream_id) + b',"eventId":"'
        self._close = (
            b',"transactionId":'
            + orjson.dumps(transaction_id)
            + b',"createdAt":'
            + orjson.dumps(created_at)
            + b"}"
        )
        self._types: dict[str, tuple[bytes, bytes]] = {}
        """Per type: its text as the tail carries it, and what follows the event id up to data."""

    def encode(self, events: Sequence[NewEvent], event_ids: bytes, limit: int) -> Encoded:
        """The events' bodies and tail; ``event_ids`` is canonical UUID text, 36 bytes per event
        (nothing to escape). Raises Unstorable for the first event that cannot be stored, or has
        more than ``limit`` bytes of data and metadata."""
        head, close, types, dumps = self._head, self._close, self._types, orjson.dumps
        announced: list[bytes] = []
        bodies: list[bytes] = []
        tagged = False
        for i, event in enumerate(events):
            try:
                data = dumps(event.data)
                metadata = None if event.metadata is None else dumps(event.metadata)
            except orjson.JSONEncodeError as exc:
                reason = f"data or metadata cannot be stored as JSON: {exc}"
                raise Unstorable(i, reason=reason) from None
            size = len(data) if metadata is None else len(data) + len(metadata)
            if size > limit:
                raise Unstorable(i, size=size)
            known = types.get(event.type)
            if known is None:
                known = types[event.type] = (
                    event.type.encode(),
                    b'","type":' + dumps(event.type) + b',"data":',
                )
            version = event.schema_version
            if version == 1 and type(version) is int:
                schema = SCHEMA_VERSION_1
            else:
                schema = b',"schemaVersion":' + dumps(version)
            event_id = event_ids[36 * i : 36 * i + 36]
            if metadata is None and not event.tags:
                body = b"".join((head, event_id, known[1], data, schema, close))
            else:
                parts = [head, event_id, known[1], data]
                if metadata is not None:
                    parts += (b',"metadata":', metadata)
                if event.tags:
                    parts += (b',"tags":', dumps(event.tags))
                    tagged = True
                parts += (schema, close)
                body = b"".join(parts)
            announced += (known[0], body)
            bodies.append(body)
        return Encoded(SEPARATOR_BYTES.join(announced), bodies, tagged)


class AppendedEvents(Sequence[LoggedEvent]):
    """The events one append just wrote, kept as the events given and the bodies sent to Redis:
    a ``LoggedEvent`` (and its text) is made only for who asks for one, and ``json_items`` puts
    each event's positions in front of its body as bytes (what an append's answer sends).
    Making them all up front cost ~1 us an event, decoding each body only to encode it again
    for the answer."""

    __slots__ = ("_bodies", "_events", "_first", "_stream_id", "_version_before")

    def __init__(
        self,
        first: int,
        stream_id: str,
        version_before: int,
        events: Sequence[NewEvent],
        bodies: list[bytes],
    ) -> None:
        self._first = first
        self._stream_id = stream_id
        self._version_before = version_before
        self._events = events
        self._bodies = bodies

    def __len__(self) -> int:
        return len(self._bodies)

    @overload
    def __getitem__(self, index: int) -> LoggedEvent: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[LoggedEvent, ...]: ...

    def __getitem__(self, index: int | slice) -> LoggedEvent | tuple[LoggedEvent, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self._bodies))[index])
        i = range(len(self._bodies))[index]  # negative indexes, IndexError
        return LoggedEvent(
            self._first + i,
            self._stream_id,
            self._events[i].type,
            positioned(self._first + i, self._version_before + i, self._bodies[i].decode()),
        )

    def json_items(self) -> list[bytes]:
        """Each event's JSON, as ``positioned`` writes it."""
        g, s = self._first, self._version_before
        return [
            b'{"globalPosition":%d,"streamPosition":%d,%b' % (g + i, s + i, body)
            for i, body in enumerate(self._bodies)
        ]


def events_array_of(groups: Iterable[Sequence[LoggedEvent]]) -> bytes:
    """A JSON array of the events of every group, in order, joined from their stored text
    without decoding it (appended events from their bodies)."""
    items: list[bytes] = []
    for group in groups:
        if isinstance(group, AppendedEvents):
            items += group.json_items()
        else:
            items += (e.json.encode() for e in group)
    return b"[" + b",".join(items) + b"]"


def positioned(global_position: int | str, stream_position: int | str, body: str) -> str:
    """An event's JSON: its positions (numbers, or their decimal text), then ``body`` (what
    ``EventBodies`` made, after ``{``). The log stores the body and the positions apart; every
    reader of the log and of announcements puts them together here."""
    return f'{{"globalPosition":{global_position},"streamPosition":{stream_position},{body}'


def created_at_text(event_json: str) -> str:
    """An event's ``createdAt`` as written, read from its JSON without decoding it: ``EventBodies``
    writes it after data and metadata, so the last ``"createdAt":"`` in the text is the event's
    own (one inside a string value would have its quote escaped)."""
    start = event_json.rindex('"createdAt":"') + 13
    return event_json[start : event_json.index('"', start)]


CREATED_AT = b'"createdAt":"'


def created_at_raw(body: bytes) -> bytes:
    """``created_at_text`` of an event's stored bytes (its body, or its whole JSON). The append
    writes ``createdAt`` last, with milliseconds: ``..."createdAt":"2026-01-02T03:04:05.678Z"}``;
    that shape is checked at the end of the text, without searching it (the archive copy reads
    every event's time), and anything else is found as ``created_at_text`` finds it."""
    end = len(body)
    if body.startswith(CREATED_AT, end - 39) and body.find(b'"', end - 26) == end - 2:
        return body[-26:-2]
    start = body.rindex(CREATED_AT) + 13
    return body[start : body.index(b'"', start)]


def event_id_of(event_json: str) -> str:
    """An event's ``eventId``, read from its JSON without decoding it: ``event_body`` writes it
    right after ``streamId``, so the first ``"eventId":"`` is its own (inside the stream id's
    string its quotes would be escaped). An id holding an escape is decoded properly."""
    start = event_json.index('"eventId":"') + 11
    value = event_json[start : event_json.index('"', start)]
    if "\\" in value:
        return str(orjson.loads(event_json)["eventId"])
    return value


def created_at_of(event_json: str) -> datetime:
    """An event's ``createdAt`` (``created_at_text``) as a time."""
    return datetime.fromisoformat(created_at_text(event_json))


def passed_before(events: Sequence[LoggedEvent], cursor: int, start: float) -> tuple[int, bool]:
    """A start from a time (``start``, epoch seconds) not reached yet: of ``events`` (log order)
    after ``cursor``, those created before it are passed over. The cursor past them, and
    whether an event created at or after it came (the start: from there on every event counts).
    Compared as ``reader.first_at`` compares, which found where such a start begins."""
    for event in events:
        if event.global_position <= cursor:
            continue
        if created_at_of(event.json).timestamp() >= start:
            return cursor, True
        cursor = event.global_position
    return cursor, False


class Announcement(NamedTuple):
    appended_at: float
    """Epoch seconds."""
    epoch: str
    """The store's epoch (its uid) when the events were appended."""
    events: list[LoggedEvent]


def decode_announcement(message: str) -> Announcement:
    """Parse what the append script publishes: first globalPosition, stream id, append time
    (epoch ms), first streamPosition, the store's epoch, then type and body (``event_body``) per
    event, joined by ``SEPARATOR``; the events come back with their JSON as the log holds it."""
    parts = message.split(SEPARATOR)
    first = int(parts[0])
    stream_id = parts[1]
    first_in_stream = int(parts[3])
    events = [
        LoggedEvent(
            first + i,
            stream_id,
            parts[5 + 2 * i],
            positioned(first + i, first_in_stream + i, parts[6 + 2 * i]),
        )
        for i in range((len(parts) - 5) // 2)
    ]
    return Announcement(int(parts[2]) / 1000.0, parts[4], events)


def events_array(events: list[LoggedEvent]) -> str:
    """A JSON array of events, joined from their stored text without decoding it."""
    return "[" + ",".join(e.json for e in events) + "]"


def json_object(fields: dict[str, Any], **raw: str) -> bytes:
    """``fields`` encoded, plus already-encoded JSON values under the names in ``raw``."""
    return orjson.dumps({**fields, **{k: orjson.Fragment(v) for k, v in raw.items()}})


def event_of(raw: str) -> dict[str, Any]:
    return orjson.loads(raw)
