"""One SSE response: the broker's ``Sink`` for its one subscription, a bounded outbox and the
one writer task that sends it (text/event-stream, contract section 9).

States: open -> closing -> closed (``close`` is safe to call twice). Like a WebSocket session,
the fan-out hands events over synchronously (``send_event``) and a full outbox demotes the
subscription to reading the log at the client's pace; only the writer awaits the client, and
the pod's watchdog (gateway/ws/sessions.py) cuts a response whose writes stall, as a last resort.

Messages: ``id: <globalPosition>`` / ``event: event`` / ``data: <event JSON>``; ``subscribed``,
``caughtUp``, ``checkpoint``, ``reset``, ``truncated`` and ``close`` as named events. Every
message that moves the client's cursor carries it as its ``id``, so a browser's ``EventSource``
reconnects with ``Last-Event-ID`` exactly where it was, on any pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from broker import LiveSubscription, LoggedEvent, QueueBudget, Reset, cancel_and_wait, codec

from ..heartbeats import Heartbeats
from ..ws.outbox import Outbox

if TYPE_CHECKING:
    from ..auth import Principal

FLUSH_SECONDS = 5.0
"""On close, what was queued gets this long to be written."""
END_SECONDS = 2.0
"""Then ending the response gets this long; past it the connection is dropped."""
RETRY_MS = 1000
"""Sent once at the start (``retry:``): how long a browser waits before reconnecting."""
HEARTBEAT = ": keep-alive\n\n"
SHARED_KEY = ("sse",)
"""The key of an event's SSE message in the fan-out's per-event dict (WebSocket frames are keyed
by their prefix strings, so a tuple cannot collide)."""

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class SseStats:
    """What the pod's SSE responses did (read at scrape time, no cost per event)."""

    delivered_live: int = 0
    delivered_replay: int = 0
    opened: int = 0
    open: int = 0


def named(kind: str, data: dict[str, Any], position: int | None = None) -> str:
    """One named SSE message (``event: kind``), with an ``id`` when it moves the cursor."""
    head = "" if position is None else f"id: {position}\n"
    return f"{head}event: {kind}\ndata: {codec.dumps_str(data)}\n\n"


class SseStream:
    """The broker's ``Sink`` for the one subscription of one SSE response, and the connection
    the pod's watchdog and drain see (``gateway.ws.sessions.Connection``)."""

    __slots__ = (
        "_abort",
        "_closed",
        "_heartbeats",
        "_send",
        "_writer",
        "close_code",
        "close_reason",
        "conn_id",
        "ended",
        "outbox",
        "principal",
        "sending_since",
        "slot",
        "state",
        "stats",
        "store",
        "sub",
    )

    def __init__(
        self,
        *,
        store: str,
        principal: Principal,
        conn_id: str | None,
        outbox_frames: int,
        outbox_bytes: int,
        heartbeats: Heartbeats,
        stats: SseStats,
        budget: QueueBudget | None = None,
        abort: Callable[[], None] | None = None,
    ) -> None:
        self._send: Send | None = None
        self._abort = abort
        self.store = store
        self.principal = principal
        self.conn_id = conn_id
        self.stats = stats
        self.outbox = Outbox(
            outbox_frames, outbox_bytes, start_writer=self._start_writer, budget=budget
        )
        self.sub: LiveSubscription | None = None
        self.state: Literal["open", "closing", "closed"] = "open"
        self.close_code = 1000
        self.close_reason = ""
        self.sending_since: float | None = None
        self.ended = False
        """The response was ended (or the connection dropped): nothing more can be sent."""
        self._heartbeats = heartbeats
        self.slot: int | None = None
        """Its slot in the heartbeats' wheel, once started."""
        self._writer: asyncio.Task[None] | None = None
        self._closed: asyncio.Event | None = None

    # -- Sink -------------------------------------------------------------------------------

    def send_event(
        self, sub: LiveSubscription, event: LoggedEvent, shared: dict[Any, Any] | None
    ) -> bool:
        # Live events: every SSE response of the pod sends the same message text (keyed apart
        # from the WebSocket frames the same dict holds).
        message = None if shared is None else shared.get(SHARED_KEY)
        if message is None:
            message = f"id: {event.global_position}\nevent: event\ndata: {event.json}\n\n"
            if shared is not None:
                shared[SHARED_KEY] = message
        if not self.outbox.offer(message):
            return False
        if sub.live:
            self.stats.delivered_live += 1
        else:
            self.stats.delivered_replay += 1
        return True

    def send_marker(self, sub: LiveSubscription, kind: str, position: int) -> bool:
        self.outbox.force(named(kind, {"globalPosition": position}, position))
        return True

    def send_reset(self, sub: LiveSubscription, reason: Reset, epoch: str, head: int) -> None:
        # The subscription starts again from the new history's beginning: so does the cursor.
        self.outbox.force(
            named("reset", {"reason": reason, "epoch": epoch, "headPosition": head}, 0)
        )

    def send_truncated(self, sub: LiveSubscription, requested: int, earliest: int) -> None:
        self.outbox.force(
            named(
                "truncated",
                {"requestedPosition": requested, "earliestPosition": earliest},
                earliest - 1,
            )
        )

    async def wait_room(self) -> None:
        await self.outbox.wait_room()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the response's head, then start the writer (what was queued goes first)."""
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self._send = send
        loop = asyncio.get_running_loop()
        if self.outbox.writer_busy:  # frames came before the head: their writer starts now
            self._writer = loop.create_task(self._write(), name=f"sse writer {self.store}")
        if self.state == "open":  # not closed while the head was sent
            self.slot = self._heartbeats.add(self)

    def _start_writer(self) -> None:
        """The outbox has frames: a task writes them (until the outbox is empty, then ends).
        Before the response's head is sent, ``start`` starts it."""
        if self._send is None:
            return
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"sse writer {self.store}"
        )

    def reply(self, frame: str) -> None:
        self.outbox.force(frame)

    def keep_alive(self) -> None:
        """Its beat (``Heartbeats``): a comment, unless something is queued or being sent."""
        if self.state == "open" and not len(self.outbox) and self.sending_since is None:
            self.outbox.force(HEARTBEAT)

    async def _write(self) -> None:
        """Send batches until the outbox is empty, then end (the next frame starts another)."""
        send = self._send
        assert send is not None
        outbox = self.outbox
        try:
            while frames := outbox.take():
                self.sending_since = time.monotonic()
                body = "".join(frames).encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
                self.sending_since = None
                outbox.sent()
        finally:
            self.sending_since = None
            outbox.writer_busy = False
            if self._writer is asyncio.current_task():
                self._writer = None

    def abort(self, linger: float = 0.0) -> None:
        """Stop sending at once (the client stopped reading): cancel the writer. (``linger``
        is a WebSocket's: a response has no close frame to wait for the client.)"""
        if self.state == "open":
            self.close_code, self.close_reason = 4008, "slow consumer"
            self.state = "closing"
        self.outbox.shut()
        if self._writer is not None:
            self._writer.cancel()
        self.outbox.drop()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Release the subscription, write what is queued (and, for any end but the client's,
        a ``close`` event saying why), then end the response. Safe to call twice and from
        several tasks: later calls wait for the first to finish."""
        if self._closed is not None:  # closing or closed: wait for the first call
            await self._closed.wait()
            return
        self._closed = asyncio.Event()
        if self.state == "open":
            self.close_code, self.close_reason = code, reason
            if code != 1000:
                self.outbox.force(named("close", {"code": code, "reason": reason}))
        self.state = "closing"
        if self.slot is not None:
            self._heartbeats.discard(self, self.slot)
            self.slot = None
        sub, self.sub = self.sub, None
        writer = None
        try:
            if sub is not None:
                await sub.close()
            self.outbox.flush_now()  # what is queued (the close event too) goes to a writer
            writer = self._writer
            if writer is not None:
                await asyncio.wait({writer}, timeout=FLUSH_SECONDS)
                flushed = writer.done() and not writer.cancelled()
                await cancel_and_wait([writer])
            else:
                flushed = True
            await self._end(flushed)
        finally:
            if writer is not None and not writer.done():
                writer.cancel()  # this caller was cancelled: the writer must not outlive us
            self.state = "closed"
            self.outbox.drop()
            self._closed.set()

    async def _end(self, flushed: bool) -> None:
        """End the response; drop the connection if that cannot be done at once."""
        if self.ended or self._send is None:
            return
        self.ended = True
        if flushed:
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(
                    self._send({"type": "http.response.body", "body": b"", "more_body": False}),
                    END_SECONDS,
                )
                return
        if self._abort is not None:
            self._abort()
