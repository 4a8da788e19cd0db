"""Store queries by the event's own fields (eventId, transactionId, createdAt) and by stream
position, against a plain Python model; and what a narrow query costs: dates become positions
before the log is read, an eventId or a transaction ends the walk."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker import EventLog, Filter, Importer, NewEvent
from broker.types import iso_at

BASE = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
STREAMS = ["order-1", "order-2", "user-1"]
TYPES = ["order.created", "order.shipped", "user.created", "x.y"]


def planned(n: int, seconds_apart: float = 10.0) -> list[dict[str, Any]]:
    """n events as an export holds them: three streams in turn, a transaction per three
    consecutive events, one every ``seconds_apart`` from BASE on."""
    versions = dict.fromkeys(STREAMS, 0)
    events = []
    for g in range(1, n + 1):
        sid = STREAMS[(g - 1) % 3]
        events.append(
            {
                "globalPosition": g,
                "streamPosition": versions[sid],
                "streamId": sid,
                "eventId": f"evt-{g}",
                "type": TYPES[(g - 1) % 4],
                "data": {"g": g, "note": '"eventId":"evt-7"'},  # a decoy for the text test
                "schemaVersion": 1,
                "transactionId": f"tx-{(g - 1) // 3}",
                "createdAt": iso_at(BASE.timestamp() + g * seconds_apart),
            }
        )
        versions[sid] += 1
    return events


async def restore(log: EventLog, store: str, events: list[dict[str, Any]]) -> None:
    importer = Importer(log._redis)
    uid, _ = await importer.head(store)
    for start in range(0, len(events), 500):
        await importer.restore(store, uid, events[start : start + 500])


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def model(events: list[dict[str, Any]], case: dict[str, Any]) -> list[int]:
    flt: Filter | None = case["flt"]
    kept = []
    for e in events:
        created = datetime.fromisoformat(e["createdAt"])
        if flt is not None and not flt.matches(e["streamId"], e["type"]):
            continue
        if case["event_id"] is not None and e["eventId"] != case["event_id"]:
            continue
        if case["transaction_id"] is not None and e["transactionId"] != case["transaction_id"]:
            continue
        if case["from_date"] is not None and created < case["from_date"]:
            continue
        if case["to_date"] is not None and created > case["to_date"]:
            continue
        if case["from_position"] is not None and e["globalPosition"] < case["from_position"]:
            continue
        if case["to_position"] is not None and e["globalPosition"] > case["to_position"]:
            continue
        first, last = case["stream_range"]
        if first is not None and e["streamPosition"] < first:
            continue
        if last is not None and e["streamPosition"] > last:
            continue
        kept.append(e["globalPosition"])
    return kept if case["direction"] == "forward" else kept[::-1]


FILTERS = [
    None,
    Filter.parse("order.*"),
    Filter.parse("*", "order-1"),
    Filter.parse(["x.y", "user.*"], "user-1"),
    Filter.parse("*", "order-2"),
]


async def test_query_by_event_fields_against_a_model(log: EventLog, store: str) -> None:
    events = planned(90)
    await restore(log, store, events)
    rng = random.Random(20260115)
    checked = 0
    for _ in range(400):
        flt = rng.choice(FILTERS)
        one_stream = flt is not None and flt.stream_id is not None
        case = {
            "flt": flt,
            "event_id": rng.choice([None, None, "evt-7", "evt-8", "evt-45", "evt-999"]),
            "transaction_id": rng.choice([None, None, "tx-2", "tx-15", "tx-29", "tx-nope"]),
            "from_date": rng.choice([None, None, at(95), at(300.5), at(2000)]),
            "to_date": rng.choice([None, None, at(200), at(400), at(-1), at(900)]),
            "from_position": rng.choice([None, 5, 30]),
            "to_position": rng.choice([None, 25, 80]),
            "stream_range": rng.choice([(None, None), (1, None), (None, 3), (2, 5)])
            if one_stream
            else (None, None),
            "direction": rng.choice(["forward", "backward"]),
        }
        offset, limit, count = rng.choice([0, 0, 1, 3]), rng.choice([1, 2, 100]), rng.random() < 0.5
        page = await log.query(
            store,
            flt=case["flt"],
            from_position=case["from_position"],
            to_position=case["to_position"],
            limit=limit,
            offset=offset,
            direction=case["direction"],
            include_count=count,
            event_id=case["event_id"],
            transaction_id=case["transaction_id"],
            from_date=case["from_date"],
            to_date=case["to_date"],
            from_stream_position=case["stream_range"][0],
            to_stream_position=case["stream_range"][1],
        )
        everything = model(events, case)
        assert [e.global_position for e in page.events] == everything[offset : offset + limit], (
            case,
            offset,
            limit,
        )
        assert page.has_more == (len(everything) > offset + limit), case
        assert page.total == (len(everything) if count else None), case
        assert page.stream_version == (30 if one_stream else None), case
        checked += bool(everything)
    assert checked > 20  # the grid is not all empty answers


@pytest.fixture
def reads(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many events the query below reads from the log, page by page."""
    counted: list[int] = []
    after, read_stream = log.after, log.read_stream

    async def counting_after(*args: Any, **kwargs: Any) -> Any:
        piece = await after(*args, **kwargs)
        counted.append(len(piece.events))
        return piece

    async def counting_read_stream(*args: Any, **kwargs: Any) -> Any:
        part = await read_stream(*args, **kwargs)
        counted.append(len(part.events))
        return part

    monkeypatch.setattr(log, "after", counting_after)
    monkeypatch.setattr(log, "read_stream", counting_read_stream)
    return counted


async def test_a_date_bounded_query_reads_its_period_not_the_log(
    log: EventLog, store: str, reads: list[int]
) -> None:
    await restore(log, store, planned(6000, seconds_apart=1.0))  # one event a second
    reads.clear()
    page = await log.query(
        store, flt=None, from_date=at(3000), to_date=at(3009.5), include_count=True
    )
    assert [e.global_position for e in page.events] == list(range(3000, 3010))
    assert page.total == 10
    # The period's events, the clock-skew allowance after it, and a second or so around each
    # end to find the exact positions: not the 6000 events of the log.
    assert sum(reads) < 60, reads

    reads.clear()
    page = await log.query(store, flt=None, to_date=at(20), direction="backward")
    assert [e.global_position for e in page.events] == list(range(20, 0, -1))
    assert sum(reads) < 60, reads

    reads.clear()
    page = await log.query(store, flt=None, from_date=at(5995), include_count=True)
    assert [e.global_position for e in page.events] == list(range(5995, 6001))
    assert sum(reads) < 60, reads


async def test_an_event_id_or_a_transaction_ends_the_walk(
    log: EventLog, store: str, reads: list[int]
) -> None:
    await restore(log, store, planned(5000, seconds_apart=0.01))
    reads.clear()
    page = await log.query(store, flt=None, event_id="evt-12", include_count=True)
    assert [e.global_position for e in page.events] == [12]
    assert page.total == 1 and not page.has_more
    assert sum(reads) <= 1000, reads  # the first page only

    reads.clear()
    page = await log.query(store, flt=None, transaction_id="tx-5", include_count=True)
    assert [e.global_position for e in page.events] == [16, 17, 18]
    assert sum(reads) <= 1000, reads

    reads.clear()
    page = await log.query(
        store, flt=Filter.parse("*", "order-1"), transaction_id="tx-5", include_count=True
    )
    assert [e.global_position for e in page.events] == [16]
    assert sum(reads) <= 1000, reads

    # The decoy in each event's data holds the text '"eventId":"evt-7"': only evt-7 is kept.
    page = await log.query(store, flt=None, event_id="evt-7", include_count=True)
    assert [e.global_position for e in page.events] == [7] and page.total == 1


async def test_a_stream_walk_reads_the_stream_as_of_its_first_page(
    log: EventLog, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await log.append(store, "s-1", [NewEvent("t", {"i": i}) for i in range(1000)])
    await log.append(store, "s-1", [NewEvent("t", {"i": i}) for i in range(500)])
    read_stream = log.read_stream
    pages = 0

    async def appending_meanwhile(*args: Any, **kwargs: Any) -> Any:
        nonlocal pages
        part = await read_stream(*args, **kwargs)
        pages += 1
        if pages == 1:
            await log.append(store, "s-1", [NewEvent("late", {}) for _ in range(5)])
        return part

    monkeypatch.setattr(log, "read_stream", appending_meanwhile)
    page = await log.query(
        store, flt=Filter.parse("*", "s-1"), offset=900, limit=1000, include_count=True
    )
    assert page.stream_version == 1500
    assert [e.global_position for e in page.events] == list(range(901, 1501))
    assert page.total == 1500 and not page.has_more
