"""How far a subscription reads ahead (``LogTail``, real Redis): up to its window's size; past it,
up to ``READ_AHEAD`` times that, only while the window holds fewer streams than requests may be
in flight and reading still finds new ones (a log whose streams come in runs), never for a log of
one stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

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


async def read(log: EventLog) -> Window:
    window = Window()
    tail = LogTail(
        log, STORE, window, size=SIZE, poll_interval=60, on_gone=lambda *_: None, streams=IN_FLIGHT
    )
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
