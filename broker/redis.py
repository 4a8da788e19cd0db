"""The one place that opens connections to Redis and turns its failures into broker errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis

from .errors import Unavailable

log = logging.getLogger("deltagate.redis")
T = TypeVar("T")

RedisMode = Literal["standalone", "cluster", "embedded"]


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str | None = None
    """None: an embedded in-process fakeredis (dev only)."""
    mode: Literal["standalone", "cluster"] = "standalone"
    timeout: float = 5.0
    max_connections: int = 200

    @property
    def embedded(self) -> bool:
        return self.url is None


class _HiredisPackedConnection(aioredis.Connection):
    """redis-py's asyncio connection packs commands in Python (about 1.5 us per argument for an
    append's event bodies); hiredis packs them in C, as redis-py's sync client already does.

    A one-word command goes to hiredis as it is: redis-py's serializer first copies every
    argument through a generator to turn bytearrays and memoryviews into bytes (0.3 us per
    appended event, py-spy), which an append never passes. Anything hiredis refuses, and
    commands of two words ("SCRIPT LOAD"), take the serializer's way."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if isinstance(head, str) and " " not in head:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        return self._packer.pack(*args)


def connect(config: RedisConfig) -> aioredis.Redis:
    """A client with a connection pool, hiredis parsing, and timeouts on every call."""
    if config.url is None:
        import fakeredis

        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    if config.mode == "cluster":
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(  # type: ignore[return-value]
            config.url,
            decode_responses=True,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
        )
    # A blocking pool: a burst (a reconnect storm) waits up to the timeout for a connection
    # instead of failing at once when the pool is exhausted.
    pool = aioredis.BlockingConnectionPool.from_url(
        config.url,
        connection_class=_HiredisPackedConnection if HIREDIS_AVAILABLE else aioredis.Connection,
        decode_responses=True,
        socket_timeout=config.timeout,
        socket_connect_timeout=config.timeout,
        socket_keepalive=True,
        health_check_interval=10,
        max_connections=config.max_connections,
        timeout=config.timeout,
    )
    return aioredis.Redis.from_pool(pool)


TRANSIENT = (rex.ConnectionError, rex.TimeoutError, ConnectionError, TimeoutError, OSError)


@asynccontextmanager
async def guarded() -> AsyncIterator[None]:
    """Turn a lost or slow Redis inside the block into ``Unavailable``."""
    try:
        yield
    except rex.BusyLoadingError as exc:
        raise Unavailable("Redis is loading its data set") from exc
    except TRANSIENT as exc:
        raise Unavailable(f"Redis is unavailable: {exc.__class__.__name__}") from exc


async def call(awaitable: Awaitable[T]) -> T:
    """Await one Redis call, turning a lost or slow Redis into ``Unavailable``."""
    async with guarded():
        return await awaitable


def load_script(client: Any, name: str) -> Any:
    """Register ``broker/scripts/<name>.lua``; redis-py reloads it after a Redis restart."""
    source = resources.files("broker").joinpath(f"scripts/{name}.lua").read_text()
    return client.register_script(source)
