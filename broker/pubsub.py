"""The one pub/sub listener: what a process hears of appends.

Every append announces its events on its store's channel (``StoreKeys.channel``; the append
script publishes, ``codec.decode_announcement`` reads it). A ``Listener`` holds one pub/sub
connection (per Redis Cluster shard), subscribes to the channels its owner asks for, and hands each
announcement to the owner's ``announced``. The live fan-out (``broker.fanout``) and the webhook
dispatcher (``broker.webhooks``) each run one.

Guarantees, and what they do not cover:
- ``announced`` is called in the order Redis delivered the messages, one at a time, from the
  listener's own task; ``tick`` runs in the same task every ``tick_interval`` seconds (and at once
  after a reconnect), so the owner never has two of its callbacks running together.
- Pub/sub is at most once: a message published while the connection is down is lost. Owners
  repair from the log on ``tick`` (a feed compares its position with the store's head); nothing
  here tries to be reliable.
- A lost connection is retried with exponential backoff (0.1 s to 5 s), logged each time;
  redis-py re-subscribes every channel when it reconnects. ``healthy`` is false meanwhile.
- Plain channels on one Redis server, shard channels (SSUBSCRIBE) on a Redis Cluster, decided by
  ``broker.redis.sharded`` from the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from .aio import cancel_and_wait
from .errors import Unavailable
from .redis import TRANSIENT, call, sharded

log = logging.getLogger("deltagate.pubsub")

MIN_BACKOFF = 0.1
MAX_BACKOFF = 5.0


class Owner(Protocol):
    """What a listener reports to."""

    async def announced(self, channel: str, data: str) -> None:
        """One message of a subscribed channel."""
        ...

    async def tick(self) -> None:
        """Periodic work in the listener's task (repairs, checkpoints, channel changes)."""
        ...


class Listener:
    """One pub/sub connection and the task that reads it. ``start()``, then ``close()``."""

    def __init__(self, redis: Any, owner: Owner, *, tick_interval: float, name: str) -> None:
        self._redis = redis
        self._owner = owner
        self._tick_interval = tick_interval
        self._name = name
        self._sharded = sharded(redis)
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.healthy = False
        """True while the connection answers."""
        self.reconnects = 0

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        if self._pubsub is not None:
            with contextlib.suppress(*TRANSIENT):
                await self._pubsub.aclose()
        self.healthy = False

    @property
    def channels(self) -> set[str]:
        if self._pubsub is None:
            return set()
        names = self._pubsub.shard_channels if self._sharded else self._pubsub.channels
        return {c.decode() if isinstance(c, bytes) else c for c in names}

    async def subscribe(self, *channels: str) -> None:
        """Subscribe; the command is on its way to Redis when this returns. Raises Unavailable."""
        if not channels:
            return
        command = self._pubsub.ssubscribe if self._sharded else self._pubsub.subscribe
        await call(command(*channels))
        self._wake.set()

    async def unsubscribe(self, *channels: str) -> None:
        if not channels:
            return
        command = self._pubsub.sunsubscribe if self._sharded else self._pubsub.unsubscribe
        await call(command(*channels))

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        next_tick = 0.0
        while True:
            try:
                now = time.monotonic()
                if now >= next_tick:
                    await self._owner.tick()
                    next_tick = now + self._tick_interval
                wait = max(0.01, next_tick - time.monotonic())
                if not self._pubsub.subscribed:
                    # Nothing to listen to: sleep until a channel is added or the next tick.
                    self.healthy = True
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                    continue
                message = await self._next_message(wait)
                self.healthy = True
                backoff = MIN_BACKOFF
                if message is not None and message["type"] in ("message", "smessage"):
                    await self._owner.announced(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except (*TRANSIENT, Unavailable) as exc:
                self.healthy = False
                self.reconnects += 1
                log.warning(
                    "pub/sub connection lost; reconnecting",
                    extra={"listener": self._name, "error": repr(exc), "retry_in": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                next_tick = 0.0  # the owner repairs what it missed as soon as Redis answers
            except Exception:
                # A bug must not silently kill a process's only listener: say so loudly, go on.
                log.exception("pub/sub listener error", extra={"listener": self._name})
                self.healthy = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _next_message(self, wait: float) -> dict[str, Any] | None:
        if self._sharded:
            return await self._pubsub.get_sharded_message(  # type: ignore[no-any-return]
                ignore_subscribe_messages=True, timeout=wait
            )
        return await self._pubsub.get_message(  # type: ignore[no-any-return]
            ignore_subscribe_messages=True, timeout=wait
        )
