"""A client made by ``broker.connect`` is closed for good by ``aclose()``: a call racing the close
(a task finishing during a shutdown) leaves no connection open, and a call after it fails
instead of opening one that nothing would ever close. redis-py's own pool connects again in
both cases, and such a socket outlives its client and its event loop (CI saw one as an
"unclosed Connection" ResourceWarning)."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions as rex

from broker import RedisConfig, Unavailable, connect
from broker.redis import call


def open_connections(client: object) -> list[object]:
    pool = client.connection_pool  # type: ignore[attr-defined]
    every = [*pool._available_connections, *pool._in_use_connections]
    return [c for c in every if c.is_connected]


async def test_calls_in_flight_when_the_client_closes_leave_nothing_open(redis_url: str) -> None:
    client = connect(RedisConfig(url=redis_url))
    calls = [asyncio.get_running_loop().create_task(client.incr("n")) for _ in range(50)]
    await asyncio.sleep(0)  # each has started: taking a connection, connecting, or sent
    await client.aclose()
    async with asyncio.timeout(10):
        await asyncio.gather(*calls, return_exceptions=True)
    assert open_connections(client) == []


async def test_a_call_after_close_fails_and_opens_nothing(redis_url: str) -> None:
    client = connect(RedisConfig(url=redis_url))
    await client.set("k", "v")
    await client.aclose()
    with pytest.raises(rex.ConnectionError, match="closed"):
        await client.get("k")
    with pytest.raises(Unavailable):  # what the broker's callers see (TRANSIENT)
        await call(client.get("k"))
    async with client.pipeline(transaction=False) as pipe:
        pipe.get("k")
        with pytest.raises(rex.ConnectionError, match="closed"):
            await pipe.execute()
    assert open_connections(client) == []


async def test_pooled_connections_redis_dropped_are_replaced_before_use(redis_url: str) -> None:
    """Connections Redis closed while they sat in the pool (a restart, CLIENT KILL, a
    failover) are opened again when handed out, not used to fail a call each. (redis-py's
    default "auto" maintenance notifications skipped that check: after a Redis restart a pod
    answered 503 on every stale connection while it said it was ready.)"""
    import redis

    admin = redis.Redis.from_url(redis_url)
    before = {c["id"] for c in admin.client_list()}
    client = connect(RedisConfig(url=redis_url))
    try:
        await asyncio.gather(*(call(client.get("k")) for _ in range(20)))
        ours = [c["id"] for c in admin.client_list() if c["id"] not in before]
        assert len(ours) >= 10  # (the pool opened a connection per concurrent call)
        for client_id in ours:
            admin.client_kill_filter(_id=client_id)
        await asyncio.sleep(0.2)  # their EOF has arrived
        answers = await asyncio.gather(
            *(call(client.get("k")) for _ in range(20)), return_exceptions=True
        )
        assert [a for a in answers if isinstance(a, Exception)] == []
    finally:
        await client.aclose()
        admin.close()
