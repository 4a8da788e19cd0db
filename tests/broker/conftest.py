"""Every broker test runs twice: against the private redis-server and against fakeredis (the
embedded dev mode's stand-in), so the two cannot drift apart."""

from __future__ import annotations

import asyncio
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


@pytest.fixture
async def real_redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the private redis-server alone (not fakeredis): one with a ``Lane`` and a lean
    pub/sub connection (``broker.redis.plain_server``)."""
    client = connect(RedisConfig(url=redis_url))
    try:
        yield client
    finally:
        await client.aclose()


class MuteServer:
    """A TCP server on 127.0.0.1 that reads everything and answers nothing: a Redis gone silent.
    ``received`` holds what each connection sent, in the order they came."""

    def __init__(self) -> None:
        self.port = 0
        self.received: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.received)
        self.received.append(b"")
        try:
            while data := await reader.read(1000):  # until the client gives up
                self.received[index] += data
        finally:
            writer.close()


@pytest.fixture
async def mute_server() -> AsyncIterator[MuteServer]:
    mute = MuteServer()
    server = await asyncio.start_server(mute.serve, "127.0.0.1", 0)
    mute.port = server.sockets[0].getsockname()[1]
    try:
        yield mute
    finally:
        server.close()
        await server.wait_closed()
