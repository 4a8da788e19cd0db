"""One WebSocket connection: a bounded outbox, one writer, and the client's subscriptions.

States: open -> closing -> closed (``close`` is safe to call twice). The hub hands events to the
session synchronously (``send_event``); only the writer task ever awaits the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from starlette.websockets import WebSocket, WebSocketDisconnect

from broker import BrokerError, LoggedEvent

from . import protocol, wsproto
from .errors import CLOSE_CODE

if TYPE_CHECKING:
    from broker.fanout import Hub, Subscription

    from .auth import Principal
    from .limits import RateLimiter
    from .metrics import Metrics

log = logging.getLogger("deltagate.ws")


class Outbox:
    """Frames waiting to be written, bounded in count and bytes.

    ``offer`` refuses an event frame past the bounds (the subscription is then demoted);
    ``force`` always queues (control messages, whose number the protocol bounds).

    Queued frames are flushed once the code that queued them yields to the event loop (one
    callback per outbox, however many frames came): the listener hands out every announcement
    it has already received first, so a connection that is behind gets all of them in one
    write. If the writer task is idle and ``write_now`` (the server's non-waiting batch write)
    takes them, the flush writes them itself, without a task switch; otherwise it wakes the
    writer, which waits for the transport.

    Every connection has one, so it is kept small: the writer waits on a future made for each
    wait, and the Event on which producers wait for room is made only once one has to wait.
    """

    __slots__ = (
        "_flush_due",
        "_frames",
        "_max_bytes",
        "_max_frames",
        "_ready",
        "_room",
        "_shut",
        "_size",
        "_waiter",
        "write_now",
    )

    def __init__(
        self,
        max_frames: int,
        max_bytes: int,
        write_now: Callable[[list[str]], bool] | None = None,
    ) -> None:
        self.write_now = write_now
        self._flush_due = False
        self._frames: list[str] = []
        self._size = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._ready = False
        """Frames queued, or a state change, since the writer last took."""
        self._waiter: asyncio.Future[None] | None = None
        """The writer, waiting in ``take``."""
        self._room: asyncio.Event | None = None
        self._shut = False

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, frame: str) -> bool:
        if self._frames and (
            len(self._frames) >= self._max_frames or self._size + len(frame) > self._max_bytes
        ):
            return False
        self.force(frame)
        return True

    def force(self, frame: str) -> None:
        self._frames.append(frame)
        self._size += len(frame)
        self._ready = True
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # the writer is busy (it takes the frames when done), woken or gone
        if self._frames and self.write_now is not None and self.write_now(self._frames):
            self._taken()
            return
        waiter.set_result(None)

    def wake(self) -> None:
        """Wake the writer now (frames or not): it checks the session's state."""
        self._ready = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def roomy(self) -> bool:
        return len(self._frames) <= self._max_frames // 2 and self._size <= self._max_bytes // 2

    def shut(self) -> None:
        """Nothing will be sent any more: release everyone waiting for room."""
        self._shut = True
        if self._room is not None:
            self._room.set()
        self.wake()

    async def _room_made(self) -> None:
        if self._room is None:
            self._room = asyncio.Event()
        self._room.clear()
        await self._room.wait()

    async def wait_room(self) -> None:
        """For producers (catch-up reads): return once there is room. Once shut, wait until
        the owner cancels the waiter (returning would let it spin on a dead outbox)."""
        while self._shut or not self.roomy():
            if self._shut:
                await asyncio.get_running_loop().create_future()
            await self._room_made()

    async def wait_room_or_shut(self) -> None:
        """For the reader of a client's messages: also return once shut."""
        while not self.roomy() and not self._shut:
            await self._room_made()

    async def take(self) -> list[str]:
        """Wait for frames, then take them all (the writer sends a whole batch per wake-up).
        Only one task (the writer) may wait here."""
        if not self._ready:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frames = self._frames
        self._taken()
        return frames

    def _taken(self) -> None:
        self._ready = False
        self._frames = []
        self._size = 0
        if self._room is not None:
            self._room.set()


_ids = itertools.count(1)


class Session:
    """Implements the hub's ``Sink`` for every subscription of one connection."""

    __slots__ = (
        "_auto_ids",
        "_closed",
        "_closing",
        "_send_texts",
        "_writer",
        "allowed",
        "close_code",
        "close_reason",
        "conn_id",
        "hub",
        "limiter",
        "max_subscriptions",
        "metrics",
        "number",
        "outbox",
        "principal",
        "sending_since",
        "state",
        "store",
        "subscriptions",
        "ws",
    )

    def __init__(
        self,
        websocket: WebSocket,
        *,
        store: str,
        hub: Hub,
        metrics: Metrics,
        max_subscriptions: int,
        outbox_frames: int,
        outbox_bytes: int,
        principal: Principal,
        limiter: RateLimiter,
        conn_id: str | None = None,
    ) -> None:
        self.ws = websocket
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.max_subscriptions = max_subscriptions
        self.principal = principal
        self.allowed = principal.narrowing
        self.limiter = limiter
        self.conn_id = conn_id
        batching = websocket.scope.get("extensions", {}).get(wsproto.EXTENSION)
        self.outbox = Outbox(
            outbox_frames, outbox_bytes, batching["write_texts"] if batching else None
        )
        self.subscriptions: dict[str, Subscription] = {}
        self.state: Literal["open", "closing", "closed"] = "open"
        self.close_code = 1000
        self.close_reason = ""
        self.sending_since: float | None = None
        self._writer: asyncio.Task[None] | None = None
        self._auto_ids = itertools.count(1)
        self._closing = False
        self._closed: asyncio.Event | None = None  # made by the first close (rarely needed)
        self.number = next(_ids)
        self._send_texts: Callable[[list[str]], Awaitable[None]] = (
            batching["send_texts"] if batching else self._send_each
        )

    # -- Sink -------------------------------------------------------------------------------

    def send_event(self, sub: Subscription, event: LoggedEvent) -> bool:
        return self.outbox.offer(sub.context + event.json + "}")

    def send_marker(self, sub: Subscription, kind: str, position: int) -> bool:
        self.outbox.force(protocol.marker(kind, sub.id, position))
        return True

    async def wait_room(self) -> None:
        await self.outbox.wait_room()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"ws writer {self.number}"
        )

    def abort(self) -> None:
        """Stop sending at once (the client stopped reading): cancel the writer."""
        if self.state == "open":
            self.close_code, self.close_reason = CLOSE_CODE["SLOW_CONSUMER"], "slow consumer"
            self.state = "closing"
        self.outbox.shut()
        if self._writer is not None:
            self._writer.cancel()

    async def _write(self) -> None:
        send_texts = self._send_texts
        try:
            while True:
                frames = await self.outbox.take()
                if frames:
                    self.sending_since = time.monotonic()
                    await send_texts(frames)
                    self.sending_since = None
                if self.state != "open" and not len(self.outbox):
                    return
        except (WebSocketDisconnect, OSError, RuntimeError):
            # The client went away mid-send (RuntimeError: the socket closed under us).
            self.state = "closing" if self.state == "open" else self.state

    async def _send_each(self, frames: list[str]) -> None:
        """Without the server's batching extension: one ASGI message per frame."""
        send = self.ws.send
        for frame in frames:
            self.sending_since = time.monotonic()
            await send({"type": "websocket.send", "text": frame})

    def reply(self, frame: str) -> None:
        self.outbox.force(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Flush what is queued, close the socket with ``code``, release every subscription.
        Safe to call twice and from several tasks (but not the writer): later calls wait for
        the first to finish."""
        if self._closing:
            assert self._closed is not None
            await self._closed.wait()
            return
        self._closing = True
        self._closed = asyncio.Event()
        if self.state == "open":
            self.close_code, self.close_reason = code, reason
        self.state = "closing"
        for sub in list(self.subscriptions.values()):
            await sub.close()
        self.metrics.ws_subscriptions.dec(len(self.subscriptions))
        self.subscriptions.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            self.outbox.wake()  # let the writer see the state change once drained
            try:
                await asyncio.wait_for(asyncio.shield(writer), 5.0)
            except (TimeoutError, asyncio.CancelledError):
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(self.close_code, self.close_reason[:120]), 2.0)
        self.state = "closed"
        self._closed.set()
        self.metrics.ws_closes.labels(str(self.close_code)).inc()

    # -- client actions ---------------------------------------------------------------------

    async def handle(self, text: str) -> None:
        try:
            action = protocol.parse(text)
            if isinstance(action, protocol.Ping):
                self.reply(protocol.message("pong"))
            elif isinstance(action, protocol.Subscribe):
                await self.subscribe(action)
            else:
                await self.unsubscribe(action)
        except protocol.ProtocolError as exc:
            self.reply(protocol.error(exc.code, exc.message, exc.subscription_id))
        # Push back on a client that sends faster than it reads our replies.
        await self.outbox.wait_room_or_shut()

    async def subscribe(self, action: protocol.Subscribe) -> None:
        sub_id = action.subscription_id or f"sub-{next(self._auto_ids)}"
        if sub_id in self.subscriptions:
            raise protocol.ProtocolError(
                "VALIDATION_ERROR", f"subscriptionId '{sub_id}' is already in use", sub_id
            )
        if len(self.subscriptions) >= self.max_subscriptions:
            raise protocol.ProtocolError(
                "LIMIT_EXCEEDED",
                f"at most {self.max_subscriptions} subscriptions per connection",
                sub_id,
            )
        if self.allowed is not None and not self.allowed.covers(action.filter):
            raise protocol.ProtocolError(
                "FORBIDDEN", "this token does not allow that filter or stream", sub_id
            )
        try:
            sub, head = await self.hub.subscribe(
                self.store,
                action.filter,
                self,
                sub_id=sub_id,
                position=action.position,
                context=protocol.event_prefix(sub_id),
            )
        except BrokerError as exc:
            raise protocol.ProtocolError(exc.code, exc.message, sub_id) from None
        if self.state != "open":
            await sub.close()
            return
        # No await since the hub registered it, so no event of it can be queued before this.
        self.subscriptions[sub_id] = sub
        self.reply(
            protocol.message(
                "subscribed",
                subscriptionId=sub_id,
                eventFilter=action.filter.wire,
                streamId=action.filter.stream_id,
                position=head,
            )
        )
        self.metrics.ws_subscriptions.inc()

    async def unsubscribe(self, action: protocol.Unsubscribe) -> None:
        if action.subscription_id is not None:
            ids = [action.subscription_id] if action.subscription_id in self.subscriptions else []
        else:
            ids = [i for i, s in self.subscriptions.items() if s.filter == action.filter]
        if not ids:
            raise protocol.ProtocolError(
                "VALIDATION_ERROR", "no such subscription", action.subscription_id
            )
        for sub_id in ids:
            sub = self.subscriptions.pop(sub_id)
            await sub.close()
            self.metrics.ws_subscriptions.dec()
            self.reply(protocol.message("unsubscribed", subscriptionId=sub_id))
