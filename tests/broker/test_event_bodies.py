"""An append's event bodies are joined from pieces (``codec.EventBodies``) and its answer's
events are made from them on demand (``codec.AppendedEvents``): both give exactly the bytes and
events that encoding the whole event as one JSON object, and reading it back, would give."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from broker import LoggedEvent, NewEvent, codec

IDS = [str(uuid.UUID(int=i * 0x1234567, version=4)).encode() for i in range(20)]
"""Canonical UUID text, a different one per event."""

EVENTS = [
    NewEvent("order.placed", {"orderId": "o-1", "total": 12.5}),
    NewEvent("order.placed", None),
    NewEvent('ünï/cödé "quoted" \\ type', {"k": ["ü", 1, None, True]}),
    NewEvent("t", {}, {"by": "me", "nested": {"a": [1, 2]}}),
    NewEvent("t", {"a": 1}, None, "1.0.0"),
    NewEvent("t", {"a": 1}, None, 7),
    NewEvent("t", {"a": 1}, {"m": 1}, 2, ("course:c1", "student:s-ü")),
    NewEvent("t", {"a": 1}, None, 1, ("only",)),
]


def whole(event: NewEvent, event_id: bytes, stream_id: str, txid: str, created_at: str) -> bytes:
    """The body as one ``orjson.dumps`` of the event's object writes it (after ``{``)."""
    fields: dict[str, Any] = {
        "streamId": stream_id,
        "eventId": event_id.decode(),
        "type": event.type,
        "data": event.data,
    }
    if event.metadata is not None:
        fields["metadata"] = event.metadata
    if event.tags:
        fields["tags"] = list(event.tags)
    fields |= {"schemaVersion": event.schema_version, "transactionId": txid}
    fields["createdAt"] = created_at
    return orjson.dumps(fields)[1:]


@pytest.mark.parametrize("stream_id", ["order-1", 'a"b\\c', "ünï", "__dcb__"])
def test_bodies_are_what_one_encoding_of_the_event_writes(stream_id: str) -> None:
    bodies = codec.EventBodies(stream_id, "tx-1", "2026-12-01T10:00:00.000Z")
    encoded = bodies.encode(EVENTS, b"".join(IDS[: len(EVENTS)]), 1000)
    assert len(encoded.bodies) == len(EVENTS) and encoded.tagged
    for event, event_id, body in zip(EVENTS, IDS, encoded.bodies, strict=False):
        assert body == whole(event, event_id, stream_id, "tx-1", "2026-12-01T10:00:00.000Z")
        text = codec.positioned(3, 0, body.decode())
        assert codec.created_at_text(text) == "2026-12-01T10:00:00.000Z"
        assert codec.event_id_of(text) == event_id.decode()
    assert encoded.tail.split(b"\x1f") == [
        part for e, b in zip(EVENTS, encoded.bodies, strict=True) for part in (e.type.encode(), b)
    ]
    untagged = bodies.encode(EVENTS[:6], b"".join(IDS[:6]), 1000)
    assert not untagged.tagged and untagged.bodies == encoded.bodies[:6]


def test_the_first_event_that_cannot_be_stored_is_named() -> None:
    bodies = codec.EventBodies("s", "tx", "2026-12-01T10:00:00.000Z")
    big = NewEvent("t", {"k": "x" * 100})
    ids = b"".join(IDS[:4])
    with pytest.raises(codec.Unstorable) as caught:
        bodies.encode([EVENTS[0], EVENTS[1], big, NewEvent("t", {"n": 2**70})], ids, 100)
    assert (caught.value.index, caught.value.size) == (2, len(codec.dumps(big.data)))
    with pytest.raises(codec.Unstorable) as caught:
        bodies.encode([EVENTS[0], NewEvent("t", {"n": 2**70}), big], ids, 100)
    assert caught.value.index == 1 and "cannot be stored as JSON" in caught.value.reason


def appended(first: int, version_before: int) -> tuple[codec.AppendedEvents, list[LoggedEvent]]:
    """The events as ``AppendedEvents`` and as a read of them would give them."""
    bodies = codec.EventBodies("s-1", "tx", "2026-12-01T10:00:00.000Z")
    encoded = bodies.encode(EVENTS, b"".join(IDS[: len(EVENTS)]), 1000).bodies
    expected = [
        LoggedEvent(
            first + i, "s-1", e.type, codec.positioned(first + i, version_before + i, b.decode())
        )
        for i, (e, b) in enumerate(zip(EVENTS, encoded, strict=True))
    ]
    return codec.AppendedEvents(first, "s-1", version_before, EVENTS, encoded), expected


def test_appended_events_read_as_the_logged_events() -> None:
    events, expected = appended(41, 7)
    assert len(events) == len(expected)
    assert list(events) == expected
    assert events[0] == expected[0] and events[-1] == expected[-1]
    assert events[2:5] == tuple(expected[2:5]) and events[::-3] == tuple(expected[::-3])
    with pytest.raises(IndexError):
        events[len(expected)]
    for event in events:
        decoded = codec.event_of(event.json)
        assert decoded["globalPosition"] == event.global_position
        assert decoded["type"] == event.type


def test_the_array_of_appended_events_is_the_array_of_their_text() -> None:
    events, expected = appended(1, 0)
    more, more_expected = appended(100, 3)
    assert codec.events_array_of([events]) == codec.events_array(expected).encode()
    joined = codec.events_array_of([events, more_expected, more])
    assert joined == codec.events_array(expected + more_expected + more_expected).encode()
    assert codec.events_array_of([]) == b"[]"
    assert orjson.loads(joined)[len(expected)]["globalPosition"] == 100
