"""What one gateway pod holds while it runs: its settings, Redis client and broker objects.

Built by the app's lifespan and reached by routes through ``runtime(request)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from broker import (
    EventLog,
    Fanout,
    KeyStore,
    RateLimiter,
    RedisWatch,
    StoreAdmin,
    WebhookStore,
)

from .auth import Authenticator
from .errors import ApiError
from .heartbeats import Heartbeats
from .metrics import Metrics
from .settings import Settings
from .sse.stream import SseStats
from .ws.sessions import Sessions

KNOWN_STORE_SECONDS = 5.0


@dataclass
class Runtime:
    settings: Settings
    redis: Any
    log: EventLog
    stores: StoreAdmin
    metrics: Metrics
    auth: Authenticator
    keys: KeyStore
    limits: RateLimiter
    fanout: Fanout
    sessions: Sessions
    webhooks: WebhookStore
    watch: RedisWatch | None = None
    """Redis' memory and eviction policy (None in the embedded dev mode)."""
    draining: bool = False
    sse_stats: SseStats = field(default_factory=SseStats)
    sse_heartbeats: Heartbeats = field(init=False)
    """The keep-alive timer of every SSE response (``settings.sse_heartbeat_seconds``)."""
    _known_stores: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sse_heartbeats = Heartbeats(self.settings.sse_heartbeat_seconds)

    def refuse_evicting_redis(self) -> None:
        """503 ``UNAVAILABLE`` while Redis may evict what is written (a ``maxmemory-policy``
        other than ``noeviction``, and how to fix it), as the last sample (``RedisWatch``, every
        5 s) found it: the answer of ``/readyz`` and of every write (an append of any kind, a
        store's creation); reads are not refused. A flag read, no Redis round trip."""
        problem = None if self.watch is None else self.watch.problem
        if problem is not None:
            raise ApiError("UNAVAILABLE", problem, headers={"Retry-After": "30"})

    async def store_exists(self, store: str) -> bool:
        """Whether a store exists, remembered for a few seconds when it does: a reconnect storm
        would otherwise ask Redis once per connection."""
        now = time.monotonic()
        if self._known_stores.get(store, 0.0) > now:
            return True
        if not await self.log.exists(store):
            return False
        if len(self._known_stores) > 10_000:
            self._known_stores.clear()
        self._known_stores[store] = now + KNOWN_STORE_SECONDS
        return True


async def runtime(conn: HTTPConnection) -> Runtime:
    """A FastAPI dependency. Async on purpose: a plain ``def`` dependency runs in a worker
    thread, which cost a thread hop per request."""
    return runtime_of(conn)


def runtime_of(conn: HTTPConnection) -> Runtime:
    return conn.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(runtime)]
"""A route's parameter for the pod's runtime."""
