"""One WebSocket connection: its outbox, one writer task, and the client's subscriptions.

States: open -> closing -> closed (``close`` is safe to call twice). The fan-out hands events to
the session synchronously (``send_event``, the broker's ``Sink``); only the writer task ever
awaits the socket.
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

from broker import (
    BrokerError,
    Fanout,
    LiveSubscription,
    LoggedEvent,
    RateLimiter,
    Reset,
    cancel_and_wait,
)

from ..errors import CLOSE_CODE
from . import batching, protocol
from .outbox import Outbox

if TYPE_CHECKING:
    from ..auth import Principal
    from ..metrics import Metrics

log = logging.getLogger("deltagate.ws")

FLUSH_SECONDS = 5.0
"""On close, what was queued gets this long to be written."""
CLOSE_SECONDS = 2.0


_ids = itertools.count(1)


class Session:
    """The broker's ``Sink`` for every subscription of one connection."""

    __slots__ = (
        "_abort",
        "_auto_ids",
        "_closed",
        "_closing",
        "_send_texts",
        "_writer",
        "allowed",
        "close_code",
        "close_reason",
        "conn_id",
        "fanout",
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
        fanout: Fanout,
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
        self.fanout = fanout
        self.metrics = metrics
        self.max_subscriptions = max_subscriptions
        self.principal = principal
        self.allowed = principal.narrowing
        self.limiter = limiter
        self.conn_id = conn_id
        batched = websocket.scope.get("extensions", {}).get(batching.EXTENSION)
        self.outbox = Outbox(
            outbox_frames,
            outbox_bytes,
            batched["write_texts"] if batched else None,
            budget=fanout.budget,
            buffered=batched["buffered"] if batched else None,
        )
        self._abort: Callable[[int, str], None] | None = batched["abort"] if batched else None
        self.subscriptions: dict[str, LiveSubscription] = {}
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
            batched["send_texts"] if batched else self._send_each
        )

    # -- Sink -------------------------------------------------------------------------------

    def send_event(self, sub: LiveSubscription, event: LoggedEvent) -> bool:
        return self.outbox.offer(sub.context + event.json + "}")

    def send_marker(self, sub: LiveSubscription, kind: str, position: int) -> bool:
        self.outbox.force(protocol.marker(kind, sub.id, position))
        return True

    def send_reset(self, sub: LiveSubscription, reason: Reset, epoch: str, head: int) -> None:
        self.outbox.force(
            protocol.message(
                "reset", subscriptionId=sub.id, reason=reason, epoch=epoch, headPosition=head
            )
        )

    def send_truncated(self, sub: LiveSubscription, requested: int, earliest: int) -> None:
        self.outbox.force(
            protocol.message(
                "truncated",
                subscriptionId=sub.id,
                requestedPosition=requested,
                earliestPosition=earliest,
            )
        )

    async def wait_room(self) -> None:
        await self.outbox.wait_room()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"ws writer {self.number}"
        )

    def abort(self) -> None:
        """Stop sending at once (the client stopped reading): cancel the writer, drop what was
        queued and the connection itself (its transport's buffer is freed now)."""
        if self.state == "open":
            self.close_code, self.close_reason = CLOSE_CODE["SLOW_CONSUMER"], "slow consumer"
            self.state = "closing"
        self.outbox.shut()
        if self._writer is not None:
            self._writer.cancel()
        if self._abort is not None:
            self._abort(self.close_code, self.close_reason)
        self.outbox.drop()

    async def _write(self) -> None:
        send_texts = self._send_texts
        try:
            while True:
                frames = await self.outbox.take()
                if frames:
                    self.sending_since = time.monotonic()
                    await send_texts(frames)
                    self.sending_since = None
                    self.outbox.sent()
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
        try:
            if writer is not None:
                self.outbox.wake()  # let the writer see the state change once drained
                # asyncio.wait, not wait_for: it neither raises the writer's own end (it may have
                # been cancelled by abort()) nor hides a cancellation of this caller.
                await asyncio.wait({writer}, timeout=FLUSH_SECONDS)
                await cancel_and_wait([writer])
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.ws.close(self.close_code, self.close_reason[:120]), CLOSE_SECONDS
                )
        finally:
            if writer is not None and not writer.done():
                writer.cancel()  # this caller was cancelled: the writer must not outlive us
            self.state = "closed"
            self.outbox.drop()
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
        flt = action.filter
        if self.allowed is not None:
            if not self.allowed.covers(flt):
                raise protocol.ProtocolError(
                    "FORBIDDEN", "this token does not allow that filter or stream", sub_id
                )
            for limit in self.allowed.contents:  # the token's content limits hold too
                flt = flt.within(limit)
        try:
            # Subscribing from a position costs the pod a replay: churn is limited per key,
            # across pods (DELTAGATE_RATE_SUBSCRIBES_PER_SECOND), after the free local checks.
            await self.limiter.hit(self.principal.key_id, "subscribe")
            made = await self.fanout.subscribe(
                self.store,
                flt,
                self,
                sub_id=sub_id,
                position=action.position,
                epoch=action.epoch,
                context=protocol.event_prefix(sub_id),
            )
        except BrokerError as exc:
            raise protocol.ProtocolError(exc.code, exc.message, sub_id) from None
        sub = made.sub
        if self.state != "open":
            await sub.close()
            return
        # No await since the fan-out registered it, so no event of it can be queued before this.
        self.subscriptions[sub_id] = sub
        self.reply(
            protocol.message(
                "subscribed",
                subscriptionId=sub_id,
                eventFilter=action.filter.wire,
                streamId=action.filter.stream_id,
                position=made.head,
                epoch=made.epoch,
            )
        )
        if made.reset is not None:
            self.send_reset(sub, made.reset, made.epoch, made.head)
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
