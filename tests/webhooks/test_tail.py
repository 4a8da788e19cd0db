"""How far a subscription reads ahead (``LogTail``, real Redis): up to its window's size; past it,
up to ``READ_AHEAD`` times that, only while the window holds fewer streams than requests may be
in flight and reading still finds new ones (a log whose streams come in runs), never for a log of
one stream. A start time not reached yet passes over the events created before it, read from the
log or announced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from broker import EventLog, Filter, NewEvent, RedisConfig, StoreAdmin, connect
from broker.webhooks.tail import PAGE, READ_AHEAD, LogTail
from broker.webhooks.window import Window

STORE = "orders"
SIZE = 500
IN_FLIGHT = 16


@pytest.fixture
async def log(redis_url: str) -> AsyncIterator[EventLog]:
    client: aioredis.Redis = connect(RedisConfig(url=redis_url))
    try:
        await StoreAdmin(client).create(STORE)
        yield EventLog(client)
    finally:
        await client.aclose()


async def runs(log: EventLog, streams: int, run: int) -> None:
    """``run`` events of one stream, then of the next, ``streams`` times."""
    for s in range(streams):
        events = [NewEvent("order.placed", {"i": i}) for i in range(run)]
        await log.append(STORE, f"order-{s}", events)


def tail_of(log: EventLog, window: Window) -> LogTail:
    return LogTail(
        log, STORE, window, size=SIZE, poll_interval=60, on_gone=lambda *_: None, streams=IN_FLIGHT
    )


async def read(log: EventLog) -> Window:
    window = Window()
    tail = tail_of(log, window)
    for _ in range(10):  # (a round reads at most PAGES_PER_ROUND pages)
        await tail.fill(Filter.parse("*"))
    return window


async def test_streams_in_runs_are_read_ahead_until_every_lane_has_one(log: EventLog) -> None:
    await runs(log, streams=40, run=100)
    window = await read(log)
    assert window.streams >= IN_FLIGHT, "a stream for every request in flight"
    assert SIZE < len(window) <= READ_AHEAD * SIZE
    assert len(window) < IN_FLIGHT * 100 + PAGE, "no further than that"


async def test_one_stream_is_not_read_ahead(log: EventLog) -> None:
    await runs(log, streams=1, run=2000)
    window = await read(log)
    assert window.streams == 1
    assert len(window) <= SIZE + PAGE, "past its size by a page at most"


async def test_runs_longer_than_the_read_ahead_stop_at_it(log: EventLog) -> None:
    await runs(log, streams=3, run=1000)
    window = await read(log)
    assert len(window) <= READ_AHEAD * SIZE


async def test_a_start_time_passes_over_the_events_created_before_it(log: EventLog) -> None:
    start = datetime.now(UTC) + timedelta(milliseconds=50)
    await log.append(STORE, "order-0", [NewEvent("order.placed", {"i": i}) for i in range(3)])
    await asyncio.sleep(0.1)
    await log.append(STORE, "order-1", [NewEvent("order.placed", {"i": i}) for i in range(2)])
    events = (await log.after(STORE, 0, 10)).events
    for how in ("read", "announced"):
        window = Window()
        tail = tail_of(log, window)
        tail.start_time = start
        if how == "read":
            await tail.fill(Filter.parse("*"))
        else:
            tail.epoch = (await log.head_and_epoch(STORE))[1]
            assert not tail.take(events[1:], Filter.parse("*"), tail.epoch), "a gap: read"
            assert tail.cursor == 0
            assert tail.take(events, Filter.parse("*"), tail.epoch)
        assert tail.cursor == 5, how
        assert tail.start_time is None, f"{how}: event 4 is the start"
        assert len(window) == 2 and window.pop_ready().position == 4, how


async def test_a_start_time_ahead_passes_over_every_event_read(log: EventLog) -> None:
    await log.append(STORE, "order-0", [NewEvent("order.placed", {"i": i}) for i in range(3)])
    window = Window()
    tail = tail_of(log, window)
    tail.start_time = datetime.now(UTC) + timedelta(hours=1)
    await tail.fill(Filter.parse("*"))
    assert tail.cursor == 3 and len(window) == 0
    assert tail.start_time is not None, "not reached"
