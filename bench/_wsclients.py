"""The load generator's WebSocket subscribers (picows): a ``Client`` speaking deltagate's
protocol, a ``SocketIoClient`` speaking Socket.IO 4 on engine.io's WebSocket transport, and the
``Group`` of connections of one phase whose counters they share.

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``); used by
``bench/_loadgen.py``. Receiving a frame costs about a microsecond of Python: per event frame a
counter, a window check and, inside the send window, one regex match for ``data.sentAt`` and a
histogram bucket; nothing is allocated per frame beyond that match.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import orjson
from _histogram import BUCKETS, bucket
from picows import WSFrame, WSListener, WSMsgType, WSTransport

SENT_AT = re.compile(rb'"sentAt":([-+0-9.eE]+)')
EVENT = b'{"type":"event"'
SIO_EVENT = b'42["event",'


class Group:
    """The connections of one phase, and what they counted."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
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


class Client(WSListener):  # type: ignore[misc]
    """One subscriber speaking deltagate's protocol: ``subscribe`` as soon as it is connected
    (``stall``: then it stops reading its socket, a reader that never keeps up)."""

    def __init__(self, group: Group, subscribe: bytes, stall: bool = False) -> None:
        super().__init__()
        self.group = group
        self.subscribe = subscribe
        self.stall = stall
        self.transport: WSTransport | None = None
        self.events = 0
        self.position: int | None = None
        self.sub_sent = 0.0
        self.caught_at = 0.0
        self.events_at_caught = -1
        self.subscribed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

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

    def on_event(self, payload: bytes) -> None:
        """The hot path: one event frame counted (no allocation beyond the sentAt match)."""
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

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._fail("disconnected")

    def _fail(self, why: str) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(why))
            self.subscribed.exception()
        if why != "disconnected" and len(self.group.errors) < 5:
            self.group.errors.append(why)


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


def subscribe_message(proto: str, event_filter: Any, position: Any) -> bytes:
    request = {"action": "subscribe", "eventFilter": event_filter, "position": position}
    if proto == "socketio":
        return b"42" + orjson.dumps(["subscribe", request])
    return orjson.dumps(request)


PROTOCOLS: dict[str, type[Client]] = {"deltagate": Client, "socketio": SocketIoClient}
