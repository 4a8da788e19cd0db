"""``codec.event_id_of`` reads an event's id from its stored JSON without decoding it, and agrees
with a full decode whatever the stream id and event id hold."""

from __future__ import annotations

import pytest

from broker import NewEvent, codec


@pytest.mark.parametrize(
    ("stream_id", "event_id"),
    [
        ("order-1", "5b8e6f0e-3c1a-4c53-9d55-3f2a1e7c9b10"),
        ('a"eventId":"fake', "real-id"),
        ("s", 'quote"inside'),
        ("s", "back\\slash"),
        ("ünï", "ïd-ü"),
    ],
)
def test_event_id_of_agrees_with_a_full_decode(stream_id: str, event_id: str) -> None:
    bodies = codec.EventBodies(stream_id, "tx", "2026-12-01T10:00:00.000Z")
    (body,) = bodies.encode(
        [NewEvent("order.placed", {"eventId": "not this one"})],
        codec.dumps(event_id)[1:-1],  # appends write UUIDs; an imported id may need escapes
        1000,
    ).bodies
    text = codec.positioned(7, 3, body.decode())
    assert codec.event_id_of(text) == codec.loads(text)["eventId"] == event_id
