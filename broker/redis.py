"""The one place that opens connections to Redis, decides what kind of Redis it is (one server or a
Cluster), and turns its failures into broker errors.

Clients made by ``connect`` return log entries (XRANGE, XREVRANGE) as Redis sends them, as lists:
replays read them by the thousand, and redis-py's conversion of each entry into a tuple and a dict
cost 12% of a replay's CPU. ``EventLog`` refuses a client that does not."""

from __future__ import annotations

import asyncio
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

from .errors import StorageFull, Unavailable

log = logging.getLogger("deltagate.redis")
T = TypeVar("T")


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


RAW_COMMANDS = ("XRANGE", "XREVRANGE")


def connect(config: RedisConfig) -> aioredis.Redis:
    """A client with a connection pool, hiredis parsing, timeouts on every call, and log entries
    returned raw (see the module's docstring)."""
    client = _client(config)
    for command in RAW_COMMANDS:
        client.set_response_callback(command, raw_entries)
    return client


def raw_entries(response: Any, **_: Any) -> Any:
    return response or []


def returns_raw_entries(client: Any) -> bool:
    return all(client.response_callbacks.get(c) is raw_entries for c in RAW_COMMANDS)


def sharded(client: Any) -> bool:
    """Whether ``client`` talks to a Redis Cluster. There a store's live channel is a shard
    channel (SPUBLISH, SSUBSCRIBE), so it lives on the store's own shard; on one server it is a
    plain channel. Decided here, from the client, and nowhere else."""
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _client(config: RedisConfig) -> aioredis.Redis:
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


@dataclass(frozen=True, slots=True)
class PlainServer:
    """How to reach one Redis server over plain TCP, as a client made by ``connect`` does."""

    host: str
    port: int
    username: str | None
    password: str | None
    timeout: float


def plain_server(client: Any) -> PlainServer | None:
    """Where ``client`` (made by ``connect``) connects, if it is one Redis server over plain TCP
    with a password at most (None for anything else: fakeredis, a Cluster, TLS, a Unix socket,
    a credential provider): what a connection of our own may copy (``pubsub.LeanPubSub``)."""
    pool = getattr(client, "connection_pool", None)
    if not HIREDIS_AVAILABLE or type(client) is not aioredis.Redis or pool is None:
        return None
    if pool.connection_class not in (_HiredisPackedConnection, aioredis.Connection):
        return None
    kwargs = pool.connection_kwargs
    if kwargs.get("credential_provider") is not None:
        return None
    return PlainServer(
        host=kwargs.get("host", "localhost"),
        port=int(kwargs.get("port", 6379)),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        timeout=float(kwargs.get("socket_connect_timeout") or 5.0),
    )


TRANSIENT = (rex.ConnectionError, rex.TimeoutError, ConnectionError, TimeoutError, OSError)


@asynccontextmanager
async def guarded() -> AsyncIterator[None]:
    """Turn a lost or slow Redis inside the block into ``Unavailable``."""
    try:
        yield
    except rex.BusyLoadingError as exc:
        raise Unavailable("Redis is loading its data set") from exc
    except rex.OutOfMemoryError as exc:
        raise StorageFull(
            "Redis is full (maxmemory reached): nothing was written; retry once retention or an "
            "operator made room"
        ) from exc
    except TRANSIENT as exc:
        raise Unavailable(f"Redis is unavailable: {exc.__class__.__name__}") from exc


async def call(awaitable: Awaitable[T]) -> T:
    """Await one Redis call, turning a lost or slow Redis into ``Unavailable``."""
    async with guarded():
        return await awaitable


def load_script(client: Any, name: str, *libraries: str) -> Any:
    """Register ``broker/scripts/<name>.lua``, after ``broker/scripts/lib/<library>.lua`` for each
    library it uses (Lua scripts cannot import: the shared machinery is put in front of them);
    redis-py reloads it after a Redis restart."""
    scripts = resources.files("broker").joinpath("scripts")
    parts = [scripts.joinpath(f"lib/{lib}.lua").read_text() for lib in libraries]
    parts.append(scripts.joinpath(f"{name}.lua").read_text())
    return client.register_script("\n".join(parts))


async def ping(client: Any, seconds: float) -> None:
    """Whether Redis answers within ``seconds``: returns, or raises Unavailable."""
    try:
        await asyncio.wait_for(call(client.ping()), seconds)
    except TimeoutError:
        raise Unavailable(f"Redis did not answer within {seconds:g} s") from None
