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
  every channel is subscribed again when it reconnects. ``healthy`` is false meanwhile.
- Plain channels on one Redis server, shard channels (SSUBSCRIBE) on a Redis Cluster, decided by
  ``broker.redis.sharded`` from the client.

Every pod hears every append of every store it serves, so a message's cost is paid per event and
per pod. On one server over plain TCP the connection is ``LeanPubSub``: an asyncio protocol whose
bytes hiredis parses, messages handed over a batch at a time; on a Redis Cluster it is
``ShardedPubSub``, the same connections, one per master. redis-py's ``PubSub`` (kept for TLS,
Unix sockets and credential providers) wraps every read in a lock, a timeout and a few
coroutines: a listener alone on the bench host (``bench/pubsub.py``) spent 196 us of CPU per
message through it at 300 messages/s against 114 us on ``LeanPubSub``, 83 against 44 at 3,000/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from typing import Any, Protocol

import hiredis
import redis.exceptions as rex

from .aio import cancel_and_wait
from .errors import Unavailable
from .redis import (
    CLUSTER_MOVING,
    HEALTH_SECONDS,
    TRANSIENT,
    PlainConnection,
    PlainServer,
    call,
    cluster_server,
    count_failure,
    open_plain,
    plain_server,
    sharded,
)

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
        """Whether ``_pubsub`` is redis-py's Cluster pub/sub (its shard-channel methods)."""
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.healthy = False
        """True while the connection answers."""
        self.reconnects = 0

    async def start(self) -> None:
        if self._sharded:
            template = cluster_server(self._redis)
            if template is not None:
                self._pubsub = ShardedPubSub(self._redis, template)
                self._sharded = False  # (it speaks LeanPubSub's interface)
            else:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        else:
            server = plain_server(self._redis)
            if server is not None:
                self._pubsub = LeanPubSub(server)
            else:
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
                if not isinstance(exc, Unavailable):  # (``call`` counted those already)
                    count_failure()
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


MESSAGES = ("message", "smessage")
MAX_BUFFERED = 10_000
"""Messages read and not yet taken: past this the connection stops reading (Redis keeps the rest
in its output buffer for this client) until the owner caught up to a tenth of it."""


class _Channels:
    """The channels a pub/sub connection of our own is to hold (kept across reconnects)."""

    def __init__(self) -> None:
        self.channels: set[str] = set()

    @property
    def subscribed(self) -> bool:
        return bool(self.channels)

    def _remember(self, channels: tuple[str, ...]) -> list[str]:
        """Add ``channels``; those that are new."""
        fresh = [c for c in channels if c not in self.channels]
        self.channels.update(channels)
        return fresh


class LeanPubSub(_Channels):
    """Plain pub/sub on one Redis server, what ``Listener`` uses of redis-py's ``PubSub``:
    ``subscribe``, ``unsubscribe``, ``get_message``, ``channels``, ``subscribed``, ``aclose``.
    Channels are remembered: a lost connection raises ``ConnectionError`` from ``get_message``
    once, and the next call connects again and subscribes them all."""

    def __init__(self, server: PlainServer) -> None:
        super().__init__()
        self._server = server
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()

    async def subscribe(self, *channels: str) -> None:
        fresh = self._remember(channels)
        conn = self._conn
        if conn is None:
            await self._connected()  # (subscribes every channel)
        elif conn.open and fresh:
            conn.send("SUBSCRIBE", *fresh)
        # (lost: get_message tells the listener, which connects again and subscribes them all)

    async def unsubscribe(self, *channels: str) -> None:
        self.channels.difference_update(channels)
        conn = self._conn
        if conn is not None and conn.open and channels:
            conn.send("UNSUBSCRIBE", *channels)

    async def get_message(
        self,
        ignore_subscribe_messages: bool = True,
        timeout: float = 0.0,  # noqa: ASYNC109 (redis-py's PubSub.get_message, which Listener calls)
    ) -> dict[str, Any] | None:
        """The next message of a subscribed channel, waiting up to ``timeout`` seconds (None:
        none came). Messages read before a loss are still handed out; then ``ConnectionError``
        is raised once, and the next call connects again."""
        conn = self._conn or await self._connected()
        if not conn.messages:
            if conn.open:
                conn.check_health(self._server.timeout)
                await conn.wait(timeout)
            if not conn.messages:
                if not conn.open:
                    self._conn = None
                    raise ConnectionError(conn.lost_because)
                return None
        kind, channel, data = conn.take()
        return {"type": kind, "pattern": None, "channel": channel, "data": data}

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _connected(self) -> _Connection:
        async with self._connecting:
            if self._conn is None:
                self._conn = await self._connect()
            return self._conn

    async def _connect(self) -> _Connection:
        conn = await open_plain(self._server, _Connection)
        if self.channels:
            conn.send("SUBSCRIBE", *self.channels)
        return conn


class _Connection(PlainConnection):
    """One pub/sub connection: messages parsed as they arrive (``take``), the rest ignored but
    for the answer a ``request`` waits for (AUTH, before anything is subscribed)."""

    what = "pub/sub connection"

    def __init__(self) -> None:
        super().__init__()
        self._reader = hiredis.Reader(encoding="utf-8")
        self.messages: deque[list[str]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._answer: asyncio.Future[Any] | None = None
        self._paused = False
        self._pinged = 0.0

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake()
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError(self.lost_because))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        self.heard = self.loop.time()
        self._pinged = 0.0
        try:
            while (reply := reader.gets()) is not False:
                if type(reply) is list and reply and reply[0] in MESSAGES:
                    self.messages.append(reply)
                elif self._answer is not None and not self._answer.done():
                    self._answer.set_result(reply)
                elif not self.unasked(reply):
                    return
        except hiredis.ProtocolError as exc:
            self.drop(f"not a Redis reply on the pub/sub connection: {exc}")
            return
        if len(self.messages) > MAX_BUFFERED and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        if self.messages:
            self._wake()

    def unasked(self, reply: Any) -> bool:
        """A reply no one waits for (a subscription's confirmation, a PONG); False when it
        ended the connection (Redis refused a command)."""
        if isinstance(reply, hiredis.ReplyError):
            self.drop(f"Redis refused a pub/sub command: {reply}")
            return False
        return True

    def send(self, *command: str) -> None:
        self.transport.write(hiredis.pack_command(command))  # type: ignore[arg-type]  # (its stub: a 1-tuple)

    async def request(self, *command: str) -> Any:
        self._answer = self.loop.create_future()
        self.send(*command)
        try:
            return await self._answer
        finally:
            self._answer = None

    def take(self) -> list[str]:
        message = self.messages.popleft()
        if self._paused and len(self.messages) < MAX_BUFFERED // 10:
            self._paused = False
            self.transport.resume_reading()
        return message

    async def wait(self, seconds: float) -> None:
        """Until a message arrives, the connection is lost, or ``seconds`` passed."""
        if not self.open:
            return
        loop = self.loop
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(seconds, self._wake)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def check_health(self, timeout: float) -> None:
        """PING a connection that was quiet for ``HEALTH_SECONDS``; drop one whose PING went
        unanswered for ``timeout`` (a peer gone without a word)."""
        now = self.loop.time()
        if self._pinged and now - self._pinged > timeout:
            self.drop(f"Redis did not answer a PING within {timeout:g} s")
        elif not self._pinged and now - self.heard > HEALTH_SECONDS:
            self._pinged = now
            self.send("PING")

    def drop(self, why: str) -> None:
        super().drop(why)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class ShardedPubSub(_Channels):
    """Shard channels on a Redis Cluster, with ``LeanPubSub``'s interface: one connection of our
    own to each master that owns a subscribed channel's slot, each channel subscribed with
    SSUBSCRIBE where its slot is, and ``get_message`` waiting on all of them at once.

    redis-py's Cluster pub/sub waits on its nodes one after the other (``timeout`` each), so a
    message on one shard waited for the others' timeouts: about a second, the listener's tick,
    where one server answers in milliseconds. And after a master died it lost its connection
    object for good ("pubsub connection not set"), leaving the listener deaf until its restart.

    A lost connection, a refused SSUBSCRIBE (MOVED: the slot is elsewhere now) or a channel
    Redis unsubscribed by itself (its slot migrated) raises ``ConnectionError`` once; the next
    call reads the slot map again, connects to the masters that own the channels now and
    subscribes them all. Messages published meanwhile are lost, as pub/sub's always may be: the
    owner repairs from the log on its next ``tick``."""

    def __init__(self, client: Any, template: PlainServer) -> None:
        super().__init__()
        self._client = client
        self._template = template
        self._conns: dict[tuple[str, int], _ShardConnection] = {}
        self._where: dict[str, tuple[str, int]] = {}
        """The master each subscribed channel was subscribed at."""
        self._bell = asyncio.Event()
        self._broken: str | None = "not connected yet"
        """Why the connections must be made again (None: they are up)."""
        self._mapped = False
        """Whether the client's slot map was read for this (a reconnect reads it again)."""
        self._turn = 0

    async def subscribe(self, *channels: str) -> None:
        fresh = self._remember(channels)
        if fresh and self._broken is None:
            try:
                await self._place(fresh)
            except (*TRANSIENT, *CLUSTER_MOVING, rex.RedisClusterException) as exc:
                self._break(f"subscribing failed: {exc!r}")
        self._bell.set()

    async def unsubscribe(self, *channels: str) -> None:
        self.channels.difference_update(channels)
        for channel in channels:
            conn = self._conns.get(self._where.pop(channel, ("", 0)))
            if conn is not None and conn.open:
                conn.send("SUNSUBSCRIBE", channel)

    async def get_message(
        self,
        ignore_subscribe_messages: bool = True,
        timeout: float = 0.0,  # noqa: ASYNC109 (redis-py's PubSub.get_message, which Listener calls)
    ) -> dict[str, Any] | None:
        """The next message of a subscribed channel on any shard, waiting up to ``timeout``
        seconds (None: none came)."""
        if self._broken is not None:
            await self._reconnect()
        message = self._take()
        if message is None:
            self._bell.clear()
            conns = list(self._conns.values())
            for conn in conns:
                if conn.open:
                    conn.check_health(self._template.timeout)
            if all(conn.open for conn in conns):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._bell.wait(), timeout)
            message = self._take()
        if message is None:
            lost = next((conn for conn in self._conns.values() if not conn.open), None)
            if lost is not None:
                self._break(lost.lost_because)
                raise ConnectionError(lost.lost_because)
            return None
        kind, channel, data = message
        return {"type": kind, "pattern": None, "channel": channel, "data": data}

    async def aclose(self) -> None:
        self._break("closed")

    def _take(self) -> list[str] | None:
        """The next message read, taking the shards in turn."""
        conns = [conn for conn in self._conns.values() if conn.messages]
        if not conns:
            return None
        self._turn += 1
        return conns[self._turn % len(conns)].take()

    def _break(self, why: str) -> None:
        self._broken = why
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._where.clear()

    async def _reconnect(self) -> None:
        """Read the slot map again, then subscribe every channel where its slot is now."""
        try:
            if self._mapped:
                await call(self._client.nodes_manager.initialize())
            else:
                await call(self._client.initialize())  # (reads the map, the first time)
                self._mapped = True
            self._broken = None
            await self._place(sorted(self.channels))
        except (*TRANSIENT, *CLUSTER_MOVING, rex.RedisClusterException) as exc:
            self._break(f"reconnecting failed: {exc!r}")
            raise ConnectionError(self._broken) from exc

    async def _place(self, channels: list[str]) -> None:
        """SSUBSCRIBE each channel at the master that owns its slot (one command each: a
        command's channels must share a slot)."""
        for channel in channels:
            node = self._client.get_node_from_key(channel)
            where = (node.host, int(node.port))
            conn = self._conns.get(where)
            if conn is None or not conn.open:
                server = dataclasses.replace(self._template, host=where[0], port=where[1])
                conn = await open_plain(server, lambda: _ShardConnection(self.channels, self._bell))
                self._conns[where] = conn
            conn.send("SSUBSCRIBE", channel)
            self._where[channel] = where


class _ShardConnection(_Connection):
    """A ``ShardedPubSub`` connection to one master: it rings the shared bell, and a channel
    Redis unsubscribes by itself (its slot migrated to another master) ends it."""

    what = "shard pub/sub connection"

    def __init__(self, wanted: set[str], bell: asyncio.Event) -> None:
        super().__init__()
        self._wanted = wanted
        self._bell = bell

    def unasked(self, reply: Any) -> bool:
        if type(reply) is list and len(reply) == 3 and reply[0] == "sunsubscribe":
            if reply[1] in self._wanted:  # not ours (we forget a channel before SUNSUBSCRIBE)
                self.drop(f"Redis unsubscribed {reply[1]}: its slot moved to another master")
                return False
            return True
        return super().unasked(reply)

    def _wake(self) -> None:
        super()._wake()
        self._bell.set()
