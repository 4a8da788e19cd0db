"""Fixtures of the webhook tests: a Redis client, the gateway app in-process, receivers,
dispatcher processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from broker import RedisConfig, connect
from gateway.app import create_app
from gateway.settings import Settings
from tests.webhooks.support import (
    DispatcherProcess,
    Receiver,
    TestClient,
    dispatchers_fixture,
)

STORE = "orders"
LOOPBACK = "127.0.0.0/8"
"""The receivers of these tests listen on 127.0.0.1, which a deployment refuses unless allowed."""


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the private redis-server, emptied for the test."""
    client = connect(RedisConfig(url=redis_url))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def api(redis_url: str) -> Iterator[TestClient]:
    settings = Settings(
        redis_url=redis_url,
        auth="disabled",
        auto_create_stores=False,
        webhook_allowed_networks=LOOPBACK,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def store(api: TestClient) -> str:
    response = api.post("/event-stores", json={"name": STORE})
    assert response.status_code == 201, response.text
    return STORE


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(*args: Any, **kwargs: Any) -> Receiver:
        receiver = Receiver(*args, **kwargs)
        started.append(receiver)
        return receiver

    try:
        yield make
    finally:
        for receiver in started:
            receiver.stop()


@pytest.fixture
def dispatchers(redis_url: str) -> Iterator[Callable[..., DispatcherProcess]]:
    yield from dispatchers_fixture(redis_url)
