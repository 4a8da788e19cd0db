"""Appending: expected versions, positions, idempotency, concurrency, odd stream ids, and the
stored event JSON."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from broker import (
    MAX_IDEMPOTENCY_TTL,
    EventLog,
    EventTooLarge,
    Filter,
    LogLimits,
    NewEvent,
    StoreAdmin,
    StoreNotFound,
    VersionConflict,
)
from broker.log import InvalidEvent, uuid4_batch


def ev(event_type: str = "order.created", **data: Any) -> NewEvent:
    return NewEvent(event_type, data)


async def all_events(log: EventLog, store: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async for piece in log.scan(store):
        batch = piece.events
        events.extend(json.loads(e.json) for e in batch)
    return events


async def stream_events(log: EventLog, store: str, stream_id: str) -> list[dict[str, Any]]:
    events, _, _ = await log.read_stream(store, stream_id)
    return [json.loads(e.json) for e in events]


# -- positions -------------------------------------------------------------------------------


async def test_positions_are_gapless_per_store_and_per_stream(log: EventLog, store: str) -> None:
    a1 = await log.append(store, "order-1", [ev(n=1), ev(n=2), ev(n=3)])
    b1 = await log.append(store, "order-2", [ev(n=4), ev(n=5)])
    a2 = await log.append(store, "order-1", [ev(n=6)])

    assert (a1.first_position, a1.last_position, a1.stream_version, a1.events_written) == (
        1,
        3,
        3,
        3,
    )
    assert (b1.first_position, b1.last_position, b1.stream_version, b1.events_written) == (
        4,
        5,
        2,
        2,
    )
    assert (a2.first_position, a2.last_position, a2.stream_version, a2.events_written) == (
        6,
        6,
        4,
        1,
    )
    assert not (a1.replayed or b1.replayed or a2.replayed)

    events = await all_events(log, store)
    assert [e["globalPosition"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e["data"]["n"] for e in events] == [1, 2, 3, 4, 5, 6]
    one = await stream_events(log, store, "order-1")
    assert [e["streamPosition"] for e in one] == [0, 1, 2, 3]
    assert [e["globalPosition"] for e in one] == [1, 2, 3, 6]
    two = await stream_events(log, store, "order-2")
    assert [e["streamPosition"] for e in two] == [0, 1]
    assert await log.head(store) == 6


# -- expected versions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("existing", "expected", "ok"),
    [
        (0, "any", True),
        (2, "any", True),
        (0, "no_stream", True),
        (2, "no_stream", False),
        (0, "stream_exists", False),
        (2, "stream_exists", True),
        (0, 0, True),
        (0, 1, False),
        (2, 2, True),
        (2, 0, False),
        (2, 1, False),
        (2, 3, False),
    ],
)
async def test_expected_version(
    log: EventLog, store: str, existing: int, expected: Any, ok: bool
) -> None:
    if existing:
        await log.append(store, "s", [ev() for _ in range(existing)])
    await log.append(store, "other", [ev()])  # the store's head is not the stream's version
    head = await log.head(store)

    if ok:
        result = await log.append(store, "s", [ev(), ev()], expected=expected)
        assert result.stream_version == existing + 2
        assert result.first_position == head + 1
        assert result.last_position == head + 2
        assert await log.head(store) == head + 2
        return

    with pytest.raises(VersionConflict) as caught:
        await log.append(store, "s", [ev(), ev()], expected=expected)
    assert caught.value.code == "STREAM_VERSION_CONFLICT"
    assert caught.value.details == {
        "streamId": "s",
        "expectedVersion": expected,
        "currentVersion": existing,
    }
    # Nothing was written.
    assert await log.head(store) == head
    _, version, _ = await log.read_stream(store, "s")
    assert version == existing


async def test_append_needs_an_existing_store(log: EventLog, stores: StoreAdmin) -> None:
    with pytest.raises(StoreNotFound) as caught:
        await log.append("missing", "s", [ev()])
    assert caught.value.code == "EVENT_STORE_NOT_FOUND"
    for bad in ("UPPER", "a{b}", "st*", "x", "has space"):
        with pytest.raises(StoreNotFound):
            await log.append(bad, "s", [ev()])
    assert await stores.list() == []


async def test_auto_create(log: EventLog, stores: StoreAdmin) -> None:
    first = await log.append("fresh", "s", [ev()], auto_create=True)
    second = await log.append("fresh", "s", [ev()], auto_create=True)
    assert first.created_store and not second.created_store
    assert (first.first_position, second.first_position) == (1, 2)
    assert (await stores.get("fresh")).head_position == 2


async def test_append_needs_events(log: EventLog, store: str) -> None:
    with pytest.raises(ValueError, match="at least one"):
        await log.append(store, "s", [])
    assert await log.head(store) == 0


async def test_event_too_large_rejects_the_whole_append(redis: Any, store: str) -> None:
    log = EventLog(redis, limits=LogLimits(max_event_bytes=2048))
    fits = NewEvent("t", {"x": "a" * 1000}, {"m": "b" * 1000})
    await log.append(store, "s", [fits])
    too_big = NewEvent("t", {"x": "a" * 1100}, {"m": "b" * 1000})
    with pytest.raises(EventTooLarge) as caught:
        await log.append(store, "s", [fits, too_big, fits])
    assert caught.value.code == "PAYLOAD_TOO_LARGE"
    assert caught.value.details is not None and caught.value.details["index"] == 1
    assert await log.head(store) == 1


# -- idempotency -----------------------------------------------------------------------------


async def test_idempotent_retry_returns_the_first_result(log: EventLog, store: str) -> None:
    first = await log.append(
        store, "s", [ev(n=1), ev(n=2)], expected="no_stream", idempotency_key="k1"
    )
    again = await log.append(
        store, "s", [ev(n=1), ev(n=2)], expected="no_stream", idempotency_key="k1"
    )
    assert again.replayed and not first.replayed
    assert (again.stream_id, again.first_position, again.last_position) == ("s", 1, 2)
    assert (again.stream_version, again.events_written) == (2, 2)
    assert again.transaction_id == first.transaction_id
    assert await log.head(store) == 2
    assert [e["data"]["n"] for e in await stream_events(log, store, "s")] == [1, 2]

    # Even a retry with a different body or stream returns what the key first did.
    other = await log.append(store, "t", [ev(n=9)], expected=7, idempotency_key="k1")
    assert other.replayed and other.stream_id == "s" and other.last_position == 2
    assert await log.head(store) == 2
    _, version, _ = await log.read_stream(store, "t")
    assert version == 0

    # A different key is a different append.
    fresh = await log.append(store, "s", [ev(n=3)], idempotency_key="k2")
    assert not fresh.replayed and fresh.first_position == 3
    assert await log.head(store) == 3


async def test_the_idempotency_ttl_is_one_redis_takes(redis: Any, store: str) -> None:
    """A TTL Redis refuses (99999999999999999 s reached the script as 1e+17) failed the append
    script after it had written the events: a 500, and a retry with the same key appended them
    again. Limits past 30 days are refused when they are built; the longest one works."""
    for ttl in (0, MAX_IDEMPOTENCY_TTL + 1, 99999999999999999):
        with pytest.raises(ValueError, match="idempotency_ttl"):
            LogLimits(idempotency_ttl=ttl)
    log = EventLog(redis, limits=LogLimits(idempotency_ttl=MAX_IDEMPOTENCY_TTL))
    first = await log.append(store, "s", [ev(n=1)], idempotency_key="long")
    again = await log.append(store, "s", [ev(n=1)], idempotency_key="long")
    assert again.replayed and again.last_position == first.last_position == 1
    assert await log.head(store) == 1


async def test_a_first_conflict_is_replayed_as_that_conflict(log: EventLog, store: str) -> None:
    with pytest.raises(VersionConflict) as first:
        await log.append(store, "s", [ev()], expected=1, idempotency_key="k")
    assert first.value.details == {"streamId": "s", "expectedVersion": 1, "currentVersion": 0}

    # The stream now reaches the version the first attempt expected ...
    await log.append(store, "s", [ev()])
    # ... but the key still answers with the first outcome, and writes nothing.
    with pytest.raises(VersionConflict) as again:
        await log.append(store, "s", [ev()], expected=1, idempotency_key="k")
    assert again.value.details == first.value.details
    assert str(again.value) == str(first.value)
    assert await log.head(store) == 1

    with pytest.raises(VersionConflict) as named:
        await log.append(store, "n", [ev()], expected="stream_exists", idempotency_key="k2")
    with pytest.raises(VersionConflict) as named_again:
        await log.append(store, "n", [ev()], expected="stream_exists", idempotency_key="k2")
    assert named_again.value.details == named.value.details
    assert named.value.details == {
        "streamId": "n",
        "expectedVersion": "stream_exists",
        "currentVersion": 0,
    }


async def test_idempotency_keys_are_per_store(log: EventLog, stores: StoreAdmin) -> None:
    await stores.create("store-a")
    await stores.create("store-b")
    a = await log.append("store-a", "s", [ev()], idempotency_key="same")
    b = await log.append("store-b", "s", [ev()], idempotency_key="same")
    assert not a.replayed and not b.replayed
    assert await log.head("store-a") == 1 and await log.head("store-b") == 1


# -- concurrency -----------------------------------------------------------------------------


async def test_one_winner_among_appenders_expecting_the_same_version(
    log: EventLog, store: str
) -> None:
    _, version, _ = await log.read_stream(store, "race")
    outcomes = await asyncio.gather(
        *(log.append(store, "race", [ev(i=i)], expected=version) for i in range(50)),
        return_exceptions=True,
    )
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    conflicts = [o for o in outcomes if isinstance(o, VersionConflict)]
    assert len(wins) == 1 and len(conflicts) == 49
    assert all(
        c.details == {"streamId": "race", "expectedVersion": 0, "currentVersion": 1}
        for c in conflicts
    )
    assert await log.head(store) == 1


async def test_50_concurrent_optimistic_appenders(log: EventLog, store: str) -> None:
    """Each appender reads the version, appends expecting it, and retries on conflict: every
    version is won exactly once and positions have no gap and no duplicate."""
    await log.append(store, "noise", [ev("noise")])
    won: list[tuple[int, int, int]] = []  # (expected version, globalPosition, appender)
    conflicts = 0

    async def appender(i: int) -> None:
        nonlocal conflicts
        while True:
            _, version, _ = await log.read_stream(store, "race", limit=1)
            try:
                result = await log.append(
                    store, "race", [ev("race.won", i=i, v=version)], expected=version
                )
            except VersionConflict as exc:
                assert exc.details is not None
                assert exc.details["currentVersion"] > version
                conflicts += 1
                continue
            assert result.stream_version == version + 1
            assert result.first_position == result.last_position
            won.append((version, result.first_position, i))
            return

    await asyncio.gather(*(appender(i) for i in range(50)))

    assert sorted(v for v, _, _ in won) == list(range(50))
    assert sorted(g for _, g, _ in won) == list(range(2, 52))
    assert sorted(i for _, _, i in won) == list(range(50))
    events = await stream_events(log, store, "race")
    assert [e["streamPosition"] for e in events] == list(range(50))
    # The event at stream position v is the one whose appender expected v.
    assert [e["data"]["v"] for e in events] == list(range(50))
    assert [e["globalPosition"] for e in await all_events(log, store)] == list(range(1, 52))
    assert await log.head(store) == 51


async def test_concurrent_any_appends_are_contiguous_and_gapless(log: EventLog, store: str) -> None:
    results = await asyncio.gather(
        *(log.append(store, f"s-{i % 5}", [ev(i=i, k=k) for k in range(3)]) for i in range(50))
    )
    spans = sorted((r.first_position, r.last_position) for r in results)
    assert spans == [(1 + 3 * n, 3 + 3 * n) for n in range(50)]
    events = await all_events(log, store)
    assert [e["globalPosition"] for e in events] == list(range(1, 151))
    for n in range(5):
        in_stream = await stream_events(log, store, f"s-{n}")
        assert [e["streamPosition"] for e in in_stream] == list(range(30))
        # An append's events sit together and in order.
        for chunk in range(0, 30, 3):
            group = in_stream[chunk : chunk + 3]
            assert [e["data"]["k"] for e in group] == [0, 1, 2]
            assert len({e["data"]["i"] for e in group}) == 1
            assert len({e["transactionId"] for e in group}) == 1


# -- stream ids ------------------------------------------------------------------------------

ODD_IDS = [
    "a{b}",
    "{orders}",
    "}{",
    "*",
    "order.*",
    "order:1:2",
    "with space",
    " leading and trailing ",
    "ünïcødé-流水",
    "emoji-🎉",
    "pipe|bar",
    'quote"backslash\\',
    "s:",
    "s",
]


async def test_odd_stream_ids_are_kept_apart(log: EventLog, store: str) -> None:
    for i, sid in enumerate(ODD_IDS):
        await log.append(store, sid, [ev("t.a", i=i), ev("t.b", i=i)], expected="no_stream")
    for i, sid in enumerate(ODD_IDS):
        events = await stream_events(log, store, sid)
        assert [(e["streamId"], e["streamPosition"], e["data"]["i"]) for e in events] == [
            (sid, 0, i),
            (sid, 1, i),
        ]
        result = await log.append(store, sid, [ev("t.c", i=i)], expected=2, idempotency_key=sid)
        assert result.stream_id == sid and result.stream_version == 3
        again = await log.append(store, sid, [ev("t.c", i=i)], expected=2, idempotency_key=sid)
        assert again.replayed and again.stream_id == sid

    for sid in ODD_IDS:
        page = await log.query(store, flt=Filter.parse("*", sid), include_count=True)
        assert page.total == 3
        assert {e.stream_id for e in page.events} == {sid}
    streams, total = await log.list_streams(store)
    assert total == len(ODD_IDS)
    assert [s.stream_id for s in streams] == ODD_IDS
    assert all(s.stream_position == 2 for s in streams)
    assert await log.head(store) == 3 * len(ODD_IDS)


# -- the stored JSON -------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_event_json_round_trips(log: EventLog, store: str) -> None:
    before = datetime.now(UTC)
    data = {"name": "Zoë 流", "n": 2**53, "f": 1.5, "nested": {"l": [1, None, True]}, "e": ""}
    result = await log.append(
        store,
        "order-7",
        [
            NewEvent("order.placed", data, {"userId": "u1"}, 3),
            NewEvent("order.noted", None),
        ],
    )
    events, version, _ = await log.read_stream(store, "order-7")
    assert version == 2
    first, second = (json.loads(e.json) for e in events)

    assert set(first) == {
        "streamId",
        "streamPosition",
        "globalPosition",
        "eventId",
        "type",
        "data",
        "metadata",
        "schemaVersion",
        "transactionId",
        "createdAt",
    }
    assert first["streamId"] == "order-7"
    assert first["streamPosition"] == 0 and second["streamPosition"] == 1
    assert first["globalPosition"] == 1 and second["globalPosition"] == 2
    assert type(first["globalPosition"]) is int and type(first["streamPosition"]) is int
    assert first["type"] == "order.placed" and second["type"] == "order.noted"
    assert first["data"] == data
    assert first["metadata"] == {"userId": "u1"}
    assert first["schemaVersion"] == 3 and second["schemaVersion"] == 1
    assert second["data"] is None and "metadata" not in second
    assert first["transactionId"] == second["transactionId"] == result.transaction_id
    assert uuid.UUID(first["eventId"]) != uuid.UUID(second["eventId"])
    created = parse_time(first["createdAt"])
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0
    assert before.replace(microsecond=0) <= created <= datetime.now(UTC)

    # The routing fields beside the text agree with it.
    for logged, parsed in zip(events, (first, second), strict=True):
        assert logged.global_position == parsed["globalPosition"]
        assert logged.stream_id == parsed["streamId"]
        assert logged.type == parsed["type"]


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


async def test_too_deeply_nested_data_is_refused_whole(log: EventLog, store: str) -> None:
    ok = await log.append(store, "s", [NewEvent("t", nested(200), nested(100))])
    assert ok.last_position == 1
    for bad in (
        [NewEvent("t", {}), NewEvent("t", nested(300))],
        [NewEvent("t", {}), NewEvent("t", {}, nested(300))],
    ):
        with pytest.raises(InvalidEvent) as caught:
            await log.append(store, "s", bad)
        assert caught.value.code == "VALIDATION_ERROR"
        assert caught.value.details is not None and caught.value.details["field"] == "events.1"
    assert await log.head(store) == 1


@pytest.mark.parametrize("n", [1, 2, 1000])
def test_event_ids_are_canonical_random_version_4_uuids(n: int) -> None:
    batch = uuid4_batch(n)
    assert len(batch) == 36 * n
    ids = [batch[36 * i : 36 * i + 36].decode() for i in range(n)]
    assert len(set(ids)) == n
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical: lower-case hex, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
