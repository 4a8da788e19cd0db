"""One WebSocket connection: its outbox and the client's subscriptions.

States: open -> closing -> closed (``close`` is safe to call twice). The fan-out hands events to
the session synchronously (``send_event``, the broker's ``Sink``); the outbox writes them on the
next turn of the loop, and only a writer task, made while the socket is backed up and ended once
it has caught up, ever awaits the socket.

On a raw connection (the server's batching protocol, no permessage-deflate) a message is queued
as its whole frame: an event's frame is built once per event and subscription id on this pod
(``shared``, handed by the fan-out to every sink of the event) and the same bytes object goes to
every connection. Otherwise messages are queued as text and the library frames them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.utils import ClientDisconnected

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
from .refresh import expires_wire, renewed

if TYPE_CHECKING:
    from ..auth import Authenticator, Principal
    from ..metrics import Metrics

log = logging.getLogger("deltagate.ws")

FLUSH_SECONDS = 5.0
"""On close, what was queued gets this long to be written."""
CLOSE_SECONDS = 2.0


_ids = itertools.count(1)


class Session:
    """The broker's ``Sink`` for every subscription of one connection."""

    __slots__ = (
        "_auto_ids",
        "_closed",
        "_ext",
        "_raw",
        "_writer",
        "allowed",
        "auth",
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
        auth: Authenticator | None = None,
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
        self.auth = auth
        """Checks a ``refresh`` action's token (None: refresh is not offered)."""
        extensions = websocket.scope.get("extensions") or {}
        ext: batching.BatchingWebSocketProtocol | None = extensions.get(batching.EXTENSION)
        self._ext = ext
        self._raw = ext is not None and ext.raw
        write_now: Callable[[list[Any]], bool] | None = None
        if ext is not None:
            write_now = ext.write_frames if self._raw else ext.write_texts
        self.outbox = Outbox(
            outbox_frames,
            outbox_bytes,
            write_now,
            start_writer=self._start_writer,
            budget=fanout.budget,
            buffered=ext.buffered_counter() if ext is not None else None,
        )
        self.subscriptions: dict[str, LiveSubscription] = {}
        self.state: Literal["open", "closing", "closed"] = "open"
        self.close_code = 1000
        self.close_reason = ""
        self.sending_since: float | None = None
        self._writer: asyncio.Task[None] | None = None
        self._auto_ids = itertools.count(1)
        self._closed: asyncio.Event | None = None  # made by the first close (rarely needed)
        self.number = next(_ids)

    # -- Sink -------------------------------------------------------------------------------

    def send_event(
        self, sub: LiveSubscription, event: LoggedEvent, shared: dict[Any, Any] | None
    ) -> bool:
        prefix: str = sub.context
        if self._raw and shared is not None:  # a live event: once per delivery, kept short
            # Keyed by the prefix string: subscriptions with the same id share one frame.
            frame = shared.get(prefix)
            if frame is None:
                frame = shared[prefix] = batching.event_frame(prefix, event.json)
            return self.outbox.offer(frame)
        if not self._raw:
            return self.outbox.offer(prefix + event.json + "}")
        return self.outbox.offer(batching.event_frame(prefix, event.json))

    def send_marker(self, sub: LiveSubscription, kind: str, position: int) -> bool:
        self.reply(protocol.marker(kind, sub.id, position))
        return True

    def send_reset(self, sub: LiveSubscription, reason: Reset, epoch: str, head: int) -> None:
        self.reply(
            protocol.message(
                "reset", subscriptionId=sub.id, reason=reason, epoch=epoch, headPosition=head
            )
        )

    def send_truncated(self, sub: LiveSubscription, requested: int, earliest: int) -> None:
        self.reply(
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

    def _start_writer(self) -> None:
        """The outbox has frames the transport would not take now: a task waits for it."""
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"ws writer {self.number}"
        )

    def abort(self, linger: float = 0.0) -> None:
        """Stop sending at once (the client stopped reading): cancel the writer, drop what was
        queued and the connection itself; its transport's buffer is freed now, or after
        ``linger`` seconds if the client does not read it and the close frame before
        (``batching.abort_connection``)."""
        if self.state == "open":
            self.close_code, self.close_reason = CLOSE_CODE["SLOW_CONSUMER"], "slow consumer"
            self.state = "closing"
        self.outbox.shut()
        if self._writer is not None:
            self._writer.cancel()
        if self._ext is not None:
            self._ext.abort_connection(self.close_code, self.close_reason, linger)
        self.outbox.drop()

    async def _write(self) -> None:
        """Send batches, waiting for the transport, until the outbox is empty; then end (the
        outbox's flush writes directly again)."""
        outbox = self.outbox
        try:
            while frames := outbox.take():
                self.sending_since = time.monotonic()
                await self._send(frames)
                self.sending_since = None
                outbox.sent()
        except (WebSocketDisconnect, OSError, RuntimeError):
            # The client went away mid-send (RuntimeError: the socket closed under us).
            self.state = "closing" if self.state == "open" else self.state
        finally:
            self.sending_since = None
            outbox.writer_busy = False
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _send(self, frames: list[Any]) -> None:
        ext = self._ext
        if ext is None:
            await self._send_each(frames)
            return
        if not ext.writable.is_set():
            await ext.writable.wait()
        if not self.outbox.write_now(frames):  # type: ignore[misc]
            raise ClientDisconnected()

    async def _send_each(self, frames: list[str]) -> None:
        """Without the server's batching extension: one ASGI message per frame."""
        send = self.ws.send
        for frame in frames:
            self.sending_since = time.monotonic()
            await send({"type": "websocket.send", "text": frame})

    def reply(self, text: str) -> None:
        """Queue a message that is never refused (replies, markers: the protocol bounds them)."""
        self.outbox.force(batching.text_frame(text) if self._raw else text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Flush what is queued, close the socket with ``code``, release every subscription.
        Safe to call twice and from several tasks (but not the writer): later calls wait for
        the first to finish."""
        if self._closed is not None:  # closing or closed: wait for the first call
            await self._closed.wait()
            return
        self._closed = asyncio.Event()
        if self.state == "open":
            self.close_code, self.close_reason = code, reason
        self.state = "closing"
        for sub in list(self.subscriptions.values()):
            await sub.close()
        self.metrics.ws_subscriptions.dec(len(self.subscriptions))
        self.subscriptions.clear()
        self.outbox.flush_now()  # what is queued goes before the close frame, or to a writer
        writer = self._writer
        try:
            if writer is not None:
                # asyncio.wait, not wait_for: it neither raises the writer's own end (it may have
                # been cancelled by abort()) nor hides a cancellation of this caller.
                await asyncio.wait({writer}, timeout=FLUSH_SECONDS)
                await cancel_and_wait([writer])
            self.outbox.shut()
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
            elif isinstance(action, protocol.Refresh):
                await self.refresh(action)
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

    async def refresh(self, action: protocol.Refresh) -> None:
        """Replace the connection's credentials, subscriptions kept (gateway/ws/refresh.py)."""
        if self.auth is None:
            raise protocol.ProtocolError("INVALID_MESSAGE", "refresh is not available here")
        filters = [sub.filter for sub in self.subscriptions.values()]
        principal = await renewed(self.auth, self.store, self.principal, action.token, filters)
        self.principal, self.allowed = principal, principal.narrowing
        self.reply(protocol.message("refreshed", expiresAt=expires_wire(principal.expires_at)))

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
