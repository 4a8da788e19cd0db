"""The load generator's subscribers: a ``Client`` speaking deltagate's WebSocket protocol (picows),
a ``SocketIoClient`` speaking Socket.IO 4 on engine.io's WebSocket transport, an ``SseClient``
reading deltagate's Server-Sent Events over a raw keep-alive HTTP/1.1 connection, and the
``Group`` of connections of one phase whose counters they share.

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``); used by
``bench/_loadgen.py``. Receiving an event costs a microsecond or a few of Python here: per event
a counter, a window check and, inside the send window, one regex match for ``data.sentAt`` and a
histogram bucket (``Subscriber.on_event``, the same for every transport); an SSE message first
has its HTTP chunk framing taken off and is split from the next at its blank line.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from _histogram import BUCKETS, bucket
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

SENT_AT = re.compile(rb'"sentAt":([-+0-9.eE]+)')
EVENT = b'{"type":"event"'
SIO_EVENT = b'42["event",'
SSE_EVENT = b"\nevent: event\n"
"""In an SSE event message, after its ``id:`` line."""


class Group:
    """The connections of one phase, and what they counted."""

    def __init__(self) -> None:
        self.clients: list[Subscriber] = []
        self.reset()
        self.s0 = self.s1 = self.t0 = self.t1 = 0.0
        self.expect_caught = 0
        self.all_caught: asyncio.Event = asyncio.Event()

    def reset(self) -> None:
        self.events = 0
        self.in_window = 0
        """Event frames received inside [t0, t1) (receive time)."""
        self.measured = 0
        """Event frames whose sentAt lies inside [s0, s1): they are in the histogram."""
        self.hist = [0] * BUCKETS
        self.slowest = 0.0
        """The highest latency in the histogram, exactly."""
        self.caught = 0
        self.other: dict[str, int] = {}
        self.errors: list[str] = []


class Subscriber:
    """What one subscriber counts and answers, whatever its transport: ``subscribe`` is what it
    sends to subscribe (a message, or an SSE request); with ``stall`` it stops reading its socket
    once that is sent, a reader that never keeps up."""

    def __init__(self, group: Group, subscribe: bytes, stall: bool = False) -> None:
        self.group = group
        self.subscribe = subscribe
        self.stall = stall
        self.events = 0
        self.position: int | None = None
        self.sub_sent = 0.0
        self.caught_at = 0.0
        self.events_at_caught = -1
        self.subscribed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """Leave as a client does (a WebSocket close frame; an SSE client hangs up)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection at once (it failed)."""
        raise NotImplementedError

    async def wait_closed(self) -> None:
        raise NotImplementedError

    def on_event(self, payload: bytes) -> None:
        """The hot path: one event counted (no allocation beyond the sentAt match)."""
        now = time.time()
        self.events += 1
        g = self.group
        g.events += 1
        if g.t0 <= now < g.t1:
            g.in_window += 1
        if g.s1:
            match = SENT_AT.search(payload)
            if match is not None:
                sent = float(match.group(1))
                if g.s0 <= sent < g.s1:
                    g.measured += 1
                    latency = now - sent
                    g.hist[bucket(latency)] += 1
                    if latency > g.slowest:
                        g.slowest = latency

    def on_message(self, message: dict[str, Any], payload: bytes) -> None:
        g = self.group
        kind = message.get("type")
        if kind == "subscribed":
            self.position = message.get("position")
            if not self.subscribed.done():
                self.subscribed.set_result(self.position)
        elif kind == "caughtUp":
            if not self.caught_at:
                self.caught_at = time.time()
                self.events_at_caught = self.events
                g.caught += 1
                if g.expect_caught and g.caught >= g.expect_caught:
                    g.all_caught.set()
        elif kind == "error":
            self._fail(f"error message: {payload[:200]!r}")
        else:
            g.other[str(kind)] = g.other.get(str(kind), 0) + 1

    def _fail(self, why: str) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(why))
            self.subscribed.exception()
        if why != "disconnected" and len(self.group.errors) < 5:
            self.group.errors.append(why)


class Client(Subscriber, WSListener):  # type: ignore[misc]
    """One subscriber speaking deltagate's WebSocket protocol: ``subscribe`` as soon as it is
    connected."""

    def __init__(self, group: Group, subscribe: bytes, stall: bool = False) -> None:
        WSListener.__init__(self)
        Subscriber.__init__(self, group, subscribe, stall)
        self.transport: WSTransport | None = None

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_disconnected

    def close(self) -> None:
        if self.is_open:
            assert self.transport is not None
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.disconnect()

    async def wait_closed(self) -> None:
        if self.transport is not None:
            await self.transport.wait_disconnected()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.send_subscribe(transport)

    def send_subscribe(self, transport: WSTransport) -> None:
        self.sub_sent = time.time()
        transport.send(WSMsgType.TEXT, self.subscribe)
        if self.stall:
            transport.underlying_transport.pause_reading()
            self.subscribed.set_result(-1)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT:
            self.on_text(transport, frame.get_payload_as_bytes())
        elif kind is WSMsgType.CLOSE:
            self._fail(f"closed by server: {frame.get_close_code()}")
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_text(self, transport: WSTransport, payload: bytes) -> None:
        if payload.startswith(EVENT):
            self.on_event(payload)
        else:
            self.on_message(orjson.loads(payload), payload)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._fail("disconnected")


class SocketIoClient(Client):
    """A Socket.IO 4 client on the WebSocket transport: engine.io v4 framing (``0`` open, ``2``
    ping answered ``3``, ``4`` message) around socket.io packets (``40`` connect, ``42[...]``
    event). It joins the namespace on ``0``, emits ``subscribe`` on ``40`` and counts
    ``42["event",...]`` frames like deltagate's event frames (the same JSON inside)."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_text(self, transport: WSTransport, payload: bytes) -> None:
        if payload.startswith(SIO_EVENT):
            self.on_event(payload)
        elif payload == b"2":
            transport.send(WSMsgType.TEXT, b"3")
        elif payload.startswith(b"0{"):
            transport.send(WSMsgType.TEXT, b"40")
        elif payload.startswith(b"40"):
            self.send_subscribe(transport)
        elif payload.startswith(b"42["):
            name, message = orjson.loads(payload[2:])[:2]
            self.on_message(message if isinstance(message, dict) else {"type": name}, payload)
        elif payload.startswith(b"44"):
            self._fail(f"connect refused: {payload[:200]!r}")


class SseClient(Subscriber, asyncio.Protocol):
    """One SSE subscriber: ``subscribe`` is its whole ``GET`` request (``sse_request``), sent
    once connected; then the response's head is checked (200, chunked) and its body read: the
    chunk framing taken off, the text split into messages at blank lines, ``event: event``
    messages counted like WebSocket event frames (the same event JSON in ``data:``), named ones
    (``subscribed``, ``caughtUp``, ...) handled like the WebSocket's messages of that type;
    comments (keep-alives) and ``retry:`` are skipped."""

    def __init__(self, group: Group, subscribe: bytes, stall: bool = False) -> None:
        super().__init__(group, subscribe, stall)
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""
        """The response head so far; None once it was read."""
        self.chunked = b""
        """Body bytes whose chunk is not complete yet."""
        self.text = b""
        """Message text after the last complete message."""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport  # uvloop's, not a subclass of asyncio.Transport
        self.sub_sent = time.time()
        transport.write(self.subscribe)
        if self.stall:
            transport.pause_reading()
            self.subscribed.set_result(-1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("disconnected")
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            head = self.head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self.head = head
                return
            self.head, data = None, head[end + 4 :]
            if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head[:end].lower():
                self._fail(f"refused: {head[:300]!r}")
                self.abort()
                return
        raw = self.chunked + data if self.chunked else data
        body: list[bytes] = [self.text]
        at = 0
        while (line := raw.find(b"\r\n", at)) >= 0:
            size = int(raw[at:line], 16)
            end = line + 2 + size
            if len(raw) < end + 2:
                break
            if not size:
                self._fail("the response ended")
                self.abort()
                return
            body.append(raw[line + 2 : end])
            at = end + 2
        self.chunked = raw[at:]
        messages = b"".join(body).split(b"\n\n")
        self.text = messages.pop()
        for message in messages:
            if SSE_EVENT in message:
                self.on_event(message)
            elif message.startswith((b"event: ", b"id: ")):
                self.on_named(message)

    def on_named(self, message: bytes) -> None:
        kind, data = "", b"{}"
        for line in message.split(b"\n"):
            if line.startswith(b"event: "):
                kind = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
        if kind == "close":  # the pod ends the response: why
            self._fail(f"close message: {data[:200]!r}")
        else:
            self.on_message({**orjson.loads(data), "type": kind}, message)


def subscribe_message(proto: str, event_filter: Any, position: Any) -> bytes:
    """What a subscriber of ``proto`` sends to subscribe to ``event_filter`` (a pattern, or a
    dict of a subscription's fields: ``eventFilter``, ``match``, ...) from ``position``: for
    ``sse``, the query of its request."""
    fields = event_filter if isinstance(event_filter, dict) else {"eventFilter": event_filter}
    if proto == "sse":
        query = {**fields, "position": position}
        text = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in query.items()}
        return b"?" + urlencode(text).encode()
    request = {"action": "subscribe", **fields, "position": position}
    if proto == "socketio":
        return b"42" + orjson.dumps(["subscribe", request])
    return orjson.dumps(request)


def sse_request(url: str, query: bytes, headers: dict[str, str] | None) -> bytes:
    """The ``GET`` of an SSE subscriber of ``url`` (``http://host:port/path``) with ``query``."""
    parts = urlsplit(url)
    lines = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"GET {parts.path}{query.decode()} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Accept: text/event-stream\r\n{lines}\r\n"
    ).encode()


PROTOCOLS: dict[str, type[Subscriber]] = {
    "deltagate": Client,
    "socketio": SocketIoClient,
    "sse": SseClient,
}
