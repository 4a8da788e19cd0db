"""Reading: one stream by stream position, the whole store by query, the list of streams.

Reads are checked against a plain Python model of the same events over grids of parameters."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from broker import EventLog, Filter, NewEvent, StoreNotFound, StreamInfo
from broker.keys import StoreKeys
from broker.query import StreamCheck
from broker.reader import StreamSlice


def glob(pattern: str, value: str) -> bool:
    """Reference matcher, written independently of broker.filters: '*' is any run."""
    if not pattern:
        return not value
    if pattern[0] == "*":
        return any(glob(pattern[1:], value[i:]) for i in range(len(value) + 1))
    return bool(value) and value[0] == pattern[0] and glob(pattern[1:], value[1:])


# -- read_stream -----------------------------------------------------------------------------


async def test_read_stream_against_a_model(log: EventLog, store: str) -> None:
    # Interleave two streams so stream positions and global positions differ.
    for n in range(7):
        await log.append(store, "target", [NewEvent("t", {"n": n})])
        await log.append(store, "other", [NewEvent("t", {"n": -n})])
    version = 7
    global_of = {n: 1 + 2 * n for n in range(version)}

    checked = 0
    for direction in ("forward", "backward"):
        for start in (None, 0, 1, 3, 6, 7, 10):
            for end in (None, 0, 2, 5, 6, 9):
                for limit in (1, 2, 3, 1000):
                    if direction == "forward":
                        lo = 0 if start is None else start
                        hi = version - 1 if end is None else end
                        want = [p for p in range(version) if lo <= p <= hi][:limit]
                    else:
                        hi = version - 1 if start is None else start
                        lo = 0 if end is None else end
                        want = [p for p in reversed(range(version)) if lo <= p <= hi][:limit]
                    events, got_version, _ = await log.read_stream(
                        store, "target", direction=direction, start=start, end=end, limit=limit
                    )
                    got = [json.loads(e.json) for e in events]
                    case = (direction, start, end, limit)
                    assert got_version == version, case
                    assert [e["streamPosition"] for e in got] == want, case
                    assert [e["data"]["n"] for e in got] == want, case
                    assert [e["globalPosition"] for e in got] == [global_of[p] for p in want]
                    assert [e.global_position for e in events] == [global_of[p] for p in want]
                    checked += 1
    assert checked == 2 * 7 * 6 * 4


async def test_read_missing_stream_and_missing_store(log: EventLog, store: str) -> None:
    for direction in ("forward", "backward"):
        assert await log.read_stream(store, "nothing", direction=direction) == StreamSlice([], 0)
        assert await log.read_stream(store, "nothing", direction=direction, start=5) == StreamSlice(
            [], 0
        )
    with pytest.raises(StoreNotFound):
        await log.read_stream("missing", "s")
    with pytest.raises(StoreNotFound):
        await log.read_stream("missing", "s", direction="backward", start=3, end=5)
    with pytest.raises(StoreNotFound):
        await log.read_stream("Not-Valid", "s")


async def test_read_after(log: EventLog, store: str) -> None:
    await log.append(store, "a", [NewEvent("t", {"n": n}) for n in range(5)])
    assert [e.global_position for e in await log.read_after(store, 0, 3)] == [1, 2, 3]
    assert [e.global_position for e in await log.read_after(store, 3, 10)] == [4, 5]
    assert await log.read_after(store, 5, 10) == []


# -- query -----------------------------------------------------------------------------------

QUERY_EVENTS = [
    ("order-1", "order.created"),
    ("order-2", "order.created"),
    ("user-1", "user.created"),
    ("order-1", "order.shipped"),
    ("order-1", "payment.created"),
    ("user-1", "user.renamed"),
    ("order-2", "order.cancelled"),
    ("order.x", "order.created"),
    ("order-1", "order.delivered"),
    ("user-2", "user.created"),
    ("order-2", "createdish"),
    ("order-1", "order."),
]

FILTERS: list[tuple[Any, str | None]] = [
    (None, None),
    ("*", None),
    ("order.*", None),
    ("*.created", None),
    ("*created*", None),
    (["order.created", "user.created"], None),
    (["order.*", "*.renamed"], None),
    ("order.*", "order-1"),
    ("*", "user-1"),
    ("*", "order-2"),
    ("nothing.matches", None),
    ("*", "no-such-stream"),
    ("order.created", "order.x"),
]


async def fill_query_store(log: EventLog, store: str) -> None:
    for stream_id, event_type in QUERY_EVENTS:
        await log.append(store, stream_id, [NewEvent(event_type, {"t": event_type})])


def model_query(
    patterns: Any,
    stream_id: str | None,
    from_position: int | None,
    to_position: int | None,
    direction: str,
) -> list[int]:
    matched = []
    for g, (sid, event_type) in enumerate(QUERY_EVENTS, start=1):
        if patterns is not None:
            pats = [patterns] if isinstance(patterns, str) else patterns
            if not any(glob(p, event_type) for p in pats):
                continue
        if stream_id is not None and sid != stream_id:
            continue
        if from_position is not None and g < from_position:
            continue
        if to_position is not None and g > to_position:
            continue
        matched.append(g)
    return matched if direction == "forward" else matched[::-1]


async def test_query_against_a_model(log: EventLog, store: str) -> None:
    await fill_query_store(log, store)
    rng = random.Random(20240611)
    cases = [
        (
            rng.choice(FILTERS),
            rng.choice([None, 0, 1, 2, 5, 12, 13, 40]),
            rng.choice([None, 0, 1, 4, 9, 12, 100]),
            rng.choice(["forward", "backward"]),
            rng.choice([0, 0, 1, 3, 11, 50]),
            rng.choice([1, 2, 5, 100]),
            rng.choice([True, False]),
        )
        for _ in range(300)
    ]
    # Every filter at least once with the plain defaults.
    cases += [(f, None, None, "forward", 0, 100, True) for f in FILTERS]
    for (patterns, sid), low, high, direction, offset, limit, count in cases:
        flt = None
        if patterns is not None or sid is not None:
            flt = Filter.parse(patterns if patterns is not None else "*", sid)
        page = await log.query(
            store,
            flt=flt,
            from_position=low,
            to_position=high,
            limit=limit,
            offset=offset,
            direction=direction,  # type: ignore[arg-type]
            include_count=count,
        )
        everything = model_query(patterns, sid, low, high, direction)
        want = everything[offset : offset + limit]
        case = (patterns, sid, low, high, direction, offset, limit, count)
        assert [e.global_position for e in page.events] == want, case
        assert [json.loads(e.json)["globalPosition"] for e in page.events] == want, case
        assert page.has_more == (len(everything) > offset + limit), case
        assert page.total == (len(everything) if count else None), case


async def test_query_spans_scan_pages(log: EventLog, store: str) -> None:
    """More events than one scan page (1000), both directions, offsets across page borders."""
    kinds = ["a.x", "b.y", "a.z"]
    for batch in range(5):
        await log.append(
            store,
            f"s-{batch % 2}",
            [NewEvent(kinds[(batch * 500 + i) % 3], {"i": i}) for i in range(500)],
        )
    assert await log.head(store) == 2500
    a_positions = [g for g in range(1, 2501) if kinds[(g - 1) % 3].startswith("a.")]
    s0_positions = [g for g in range(1, 2501) if ((g - 1) // 500) % 2 == 0]
    s1_positions = [g for g in range(1, 2501) if ((g - 1) // 500) % 2 == 1]

    page = await log.query(store, flt=Filter.parse("a.*"), offset=990, limit=30)
    assert [e.global_position for e in page.events] == a_positions[990:1020]
    assert page.has_more and page.total is None

    page = await log.query(
        store, flt=Filter.parse("a.*"), offset=1600, limit=1000, include_count=True
    )
    assert [e.global_position for e in page.events] == a_positions[1600:]
    assert page.total == len(a_positions) and not page.has_more

    page = await log.query(store, flt=None, direction="backward", offset=999, limit=3)
    assert [e.global_position for e in page.events] == [1501, 1500, 1499]
    assert page.has_more

    # Stream s-0 holds 1500 events: more than one chunk of its index.
    page = await log.query(
        store, flt=Filter.parse("*", "s-0"), direction="backward", offset=998, limit=4
    )
    assert [e.global_position for e in page.events] == s0_positions[::-1][998:1002]
    assert page.has_more
    page = await log.query(
        store, flt=Filter.parse("a.*", "s-0"), offset=900, limit=50, include_count=True
    )
    s0_a = [g for g in s0_positions if g in set(a_positions)]
    assert [e.global_position for e in page.events] == s0_a[900:950]
    assert page.total == len(s0_a) and page.has_more

    page = await log.query(
        store,
        flt=Filter.parse("*", "s-1"),
        from_position=800,
        to_position=1700,
        include_count=True,
        limit=1000,
    )
    want = [g for g in s1_positions if 800 <= g <= 1700]
    assert [e.global_position for e in page.events] == want
    assert page.total == len(want)


async def test_query_missing_store(log: EventLog) -> None:
    with pytest.raises(StoreNotFound):
        await log.query("missing", flt=None)
    with pytest.raises(StoreNotFound):
        await log.query("bad{name}", flt=Filter.parse("*", "s"))


# -- list_streams ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream_id", "stream_type"),
    [
        ("order-123", "order"),
        ("product:789", "product"),
        ("user_42", "user"),
        ("cart", "cart"),
        ("a_b-c:d", "a"),
        ("tenant:a-1", "tenant"),
        ("-lead", ""),
        ("order.x", "order.x"),
    ],
)
def test_stream_type_is_the_id_up_to_the_first_delimiter(stream_id: str, stream_type: str) -> None:
    assert StreamInfo(stream_id, 0, "", "").stream_type == stream_type


async def test_list_streams(log: EventLog, store: str) -> None:
    assert await log.list_streams(store) == ([], 0)
    ids = ["order-1", "user-9", "order-2", "cart-1", "Order-3"]
    for n, sid in enumerate(ids):
        await log.append(store, sid, [NewEvent("t", {}) for _ in range(n + 1)])
    await log.append(store, "order-1", [NewEvent("t", {})])  # does not change the order

    streams, total = await log.list_streams(store)
    assert total == 5
    assert [s.stream_id for s in streams] == ids
    assert [s.stream_position for s in streams] == [1, 1, 2, 3, 4]
    assert [s.stream_type for s in streams] == ["order", "user", "order", "cart", "Order"]
    for s in streams:
        assert s.created_at and s.created_at <= s.updated_at

    pages = []
    for offset in (0, 2, 4, 6):
        page, page_total = await log.list_streams(store, limit=2, offset=offset)
        assert page_total == 5
        pages.append([s.stream_id for s in page])
    assert pages == [ids[0:2], ids[2:4], ids[4:5], []]

    found, found_total = await log.list_streams(store, where=StreamCheck(contains="order"))
    assert [s.stream_id for s in found] == ["order-1", "order-2", "Order-3"]
    assert found_total == 3
    found, found_total = await log.list_streams(
        store, where=StreamCheck(contains="order"), limit=1, offset=1
    )
    assert [s.stream_id for s in found] == ["order-2"] and found_total == 3

    with pytest.raises(StoreNotFound):
        await log.list_streams("missing")


async def test_list_streams_filtered_and_sorted(log: EventLog, store: str) -> None:
    ids = ["order-1", "user_9", "order:2", "cart", "product-7"]
    for n, sid in enumerate(ids):
        await log.append(store, sid, [NewEvent("t", {}) for _ in range(n + 1)])

    async def listed(**kwargs: Any) -> tuple[list[str], int]:
        streams, total = await log.list_streams(store, **kwargs)
        return [s.stream_id for s in streams], total

    assert await listed(descending=True) == (ids[::-1], 5)
    assert await listed(descending=True, limit=2, offset=1) == (ids[::-1][1:3], 5)
    assert await listed(where=StreamCheck(types=["order"])) == (["order-1", "order:2"], 2)
    assert await listed(where=StreamCheck(pattern="*r*-*")) == (["order-1", "product-7"], 2)
    assert await listed(where=StreamCheck(stream_id="cart")) == (["cart"], 1)
    assert await listed(where=StreamCheck(stream_id="none")) == ([], 0)
    assert await listed(where=StreamCheck(min_position=2, max_position=3)) == (
        ["order:2", "cart"],
        2,
    )
    assert await listed(sort_by="streamId") == (sorted(ids), 5)
    assert await listed(sort_by="streamPosition", descending=True, limit=2) == (
        ["product-7", "cart"],
        5,
    )
    await log.append(store, "order-1", [NewEvent("t", {})])
    assert (await listed(sort_by="updatedAt"))[0][-1] == "order-1"
    first = (await log.list_streams(store))[0][0]
    created = datetime.fromisoformat(first.created_at)
    assert (await listed(where=StreamCheck(to_date=created)))[0][0] == "order-1"
    assert await listed(where=StreamCheck(to_date=created - timedelta(seconds=1))) == ([], 0)
    assert await listed(where=StreamCheck(from_date=created + timedelta(days=1))) == ([], 0)


# -- the log's formats -----------------------------------------------------------------------


async def test_entries_of_the_first_format_read_back_as_they_were_written(
    redis: Any, log: EventLog, store: str
) -> None:
    # The first format stored each event's whole JSON in one field; the current one stores the
    # streamPosition and the body apart. A log may hold both: an old entry, then a new one.
    keys = StoreKeys(store)
    old = '{"globalPosition":1,"streamPosition":0,"streamId":"s-1","type":"a","data":{"v":1}}'
    await redis.xadd(keys.log, {"s": "s-1", "t": "a", "e": old}, id="1-0")
    await redis.rpush(keys.stream("s-1"), "1")
    await redis.hset(keys.meta, "head", 1)
    await log.append(store, "s-1", [NewEvent("b", {"v": 2})])

    scanned = [e for page in [p async for p in log.scan(store)] for e in page.events]
    by_stream, version, _ = await log.read_stream(store, "s-1")
    assert version == 2
    for events in (scanned, by_stream):
        assert [(e.global_position, e.stream_id, e.type) for e in events] == [
            (1, "s-1", "a"),
            (2, "s-1", "b"),
        ]
        assert events[0].json == old
        new = json.loads(events[1].json)
        assert (new["globalPosition"], new["streamPosition"], new["data"]) == (2, 1, {"v": 2})
        assert list(new)[:2] == ["globalPosition", "streamPosition"]
