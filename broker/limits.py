"""Rate limits and quotas per API key, shared by every pod through Redis. Going past one raises
``RateLimited`` (the gateway answers 429 with Retry-After, or an ``error`` message on a socket).

Fixed one-second windows (one INCR per action, pipelined with its EXPIRE) for appends and
subscribe actions; a sorted set of live connection ids per key for the connection quota, each
entry refreshed by its pod and expiring on its own if the pod dies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from .errors import RateLimited
from .keys import connection_count, rate_bucket
from .redis import call

CONNECTION_TTL = 30.0
"""A connection entry not refreshed for this long (its pod died) stops counting."""


class RateLimiter:
    def __init__(
        self,
        redis: Any,
        *,
        appends: int,
        subscribes: int,
        connections: int,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._redis = redis
        self.limits = {"append": appends, "subscribe": subscribes}
        self.max_connections = connections
        self._on_refused = on_refused
        """Told the kind of each refusal (append, subscribe, connection): metrics."""

    async def hit(self, key_id: str | None, kind: str) -> None:
        """Count one action; raise 429 RATE_LIMIT_EXCEEDED past the key's limit this second."""
        limit = self.limits[kind]
        if key_id is None or limit <= 0:
            return
        window = int(time.time())
        bucket = rate_bucket(key_id, kind, window)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(bucket)
            pipe.expire(bucket, 2)
            count, _ = await call(pipe.execute())
        if count > limit:
            if self._on_refused is not None:
                self._on_refused(kind)
            raise RateLimited(
                f"more than {limit} {kind} actions per second for this key",
                {"limit": limit, "per": "second"},
            )

    async def open_connection(self, key_id: str | None) -> str | None:
        """Register a connection; raise RATE_LIMIT_EXCEEDED past the key's quota."""
        if key_id is None or self.max_connections <= 0:
            return None
        conn_id = uuid.uuid4().hex
        zset = connection_count(key_id)
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(zset, "-inf", now)
            pipe.zadd(zset, {conn_id: now + CONNECTION_TTL})
            pipe.zcard(zset)
            pipe.expire(zset, int(CONNECTION_TTL) * 2)
            _, _, count, _ = await call(pipe.execute())
        if count > self.max_connections:
            await call(self._redis.zrem(zset, conn_id))
            if self._on_refused is not None:
                self._on_refused("connection")
            raise RateLimited(f"this key already has {self.max_connections} open connections")
        return conn_id

    async def refresh(self, connections: list[tuple[str, str]]) -> None:
        """Keep (key id, connection id) entries of this pod's live connections counting."""
        if not connections:
            return
        until = time.time() + CONNECTION_TTL
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id, conn_id in connections:
                pipe.zadd(connection_count(key_id), {conn_id: until}, xx=True)
            await call(pipe.execute())

    async def close_connection(self, key_id: str | None, conn_id: str | None) -> None:
        if key_id is not None and conn_id is not None:
            await call(self._redis.zrem(connection_count(key_id), conn_id))
