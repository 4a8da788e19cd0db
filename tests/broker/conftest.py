"""Every broker test runs twice: against the private redis-server and against fakeredis (the
embedded dev mode's stand-in), so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from broker import Archive, EventLog, RedisConfig, StoreAdmin, connect


@pytest.fixture(params=["redis", "fakeredis"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")  # the private server, flushed for this test
        client = connect(RedisConfig(url=url))
    else:
        client = connect(RedisConfig(url=None))  # the embedded dev mode's fakeredis
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def log(redis: aioredis.Redis) -> EventLog:
    return EventLog(redis)


@pytest.fixture
def stores(redis: aioredis.Redis) -> StoreAdmin:
    return StoreAdmin(redis)


@pytest.fixture
async def store(stores: StoreAdmin) -> str:
    """A fresh, empty store."""
    await stores.create("orders")
    return "orders"


@pytest.fixture
async def archive(archive_url: str) -> AsyncIterator[Archive]:
    """The archive on this worker's PostgreSQL database, emptied for this test."""
    a = Archive(archive_url)
    try:
        yield a
    finally:
        await a.close()
