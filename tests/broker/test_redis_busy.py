"""A Redis answering BUSY (someone's script has run past ``busy-reply-threshold``: it answers
nothing else until the script ends) is Unavailable to the broker's callers, a 503 that says to
retry, never an unexpected error (a 500: a black-box probe's DCB query held Redis for 4.5 s and
another tenant's append failed that way)."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions as rex

from broker import RedisConfig, Unavailable, connect
from broker.redis import call

BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or FUNCTION KILL."


async def failing(exc: Exception) -> None:
    raise exc


async def test_busy_is_unavailable_and_other_refusals_stay_what_they_are() -> None:
    with pytest.raises(Unavailable, match="busy"):
        await call(failing(rex.ResponseError(BUSY)))
    # In a pipeline, redis-py puts the command in front of the server's words.
    piped = f"Command # 1 (EVALSHA abc 2 m l) of pipeline caused error: ('{BUSY}',)"
    with pytest.raises(Unavailable, match="busy"):
        await call(failing(rex.ResponseError(piped)))
    with pytest.raises(rex.ResponseError, match="WRONGTYPE"):
        await call(failing(rex.ResponseError("WRONGTYPE Operation against a key")))
    with pytest.raises(rex.ResponseError, match="BUSYKEY"):
        await call(failing(rex.ResponseError("BUSYKEY Target key name already exists.")))


SPIN = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
while true do
  t = redis.call('TIME')
  if t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) then return 1 end
end
"""


async def test_a_real_busy_redis_is_unavailable(redis_url: str) -> None:
    spinner, client = connect(RedisConfig(url=redis_url)), connect(RedisConfig(url=redis_url))
    await client.ping()
    threshold = await client.config_get("busy-reply-threshold")
    await client.config_set("busy-reply-threshold", 50)
    try:
        spin = asyncio.ensure_future(spinner.eval(SPIN, 0, 600_000))
        await asyncio.sleep(0.2)  # the script is past the threshold
        with pytest.raises(Unavailable, match="busy"):
            await call(client.get("k"))
        await spin
    finally:
        await client.config_set("busy-reply-threshold", threshold["busy-reply-threshold"])
        await spinner.aclose()
        await client.aclose()
