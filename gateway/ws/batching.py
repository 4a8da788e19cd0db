"""uvicorn's websockets-sansio protocol plus what ASGI cannot say: write these frames now, in one
socket write, and tell me when the socket can take more.

On a pod, fan-out time is mostly the kernel's send path and the Python calls around it
(bench/fanout.py, profiled with py-spy). A server frame carries no mask, so for one event the
frame bytes are the same for every subscriber whose message is the same (the same subscription
id): the session builds them once per event and subscription id (``text_frame``) and every
connection writes the same bytes object. Through ASGI each message would be framed again per
connection and written on its own; with this protocol a connection writes everything queued for
it with one ``transport.write`` (or ``writelines``), and the ASGI layers are skipped.

The server offers the protocol object itself as the ASGI extension :data:`EXTENSION` in the
connection's scope (one reference per connection, no per-connection dict of bound methods):

- ``raw``: True when no extension (permessage-deflate) was negotiated, so prebuilt frames may
  be written as they are; otherwise messages go through the library (``write_texts``), which
  frames and compresses each for its connection;
- ``write_frames`` / ``write_texts``: write now, or return False (nothing written) when the
  transport is above its high-water mark or the connection is going away;
- ``send_texts``: the same, waiting for the transport like ``websocket.send``;
- ``writable``: the event uvicorn sets when the transport can take more;
- ``buffered()``: the bytes the transport holds; ``abort_connection``: cut a stalled client.

Its keep-alive pings (uvicorn's ``ws_ping_interval`` and ``ws_ping_timeout``) go from one wheel
per loop and interval (``gateway.heartbeats``), not a timer handle per connection; a pong's
deadline starts again while the ping still waits behind data the peer is reading
(``keepalive_timeout``).

A session uses them when present and sends message by message through ASGI otherwise (another
server, the test client).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from ..heartbeats import Heartbeats
from ..loops import PerLoop
from ..server import Flag

EXTENSION = "deltagate.send_texts"

_TEXT = 0x81  # FIN + opcode 1 (RFC 6455 section 5.2); server frames are never masked
_SHORT = struct.Struct("!BB").pack
_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack
_OPEN = State.OPEN  # looked up once: an enum member's lookup is not free, and this is per write


_TCP_INFO_ACKED = 120
"""Offset of ``tcpi_bytes_acked`` (u64) in Linux's ``struct tcp_info`` (since 4.1)."""
_PING_FRAME = 6
"""Bytes of a keep-alive ping's frame (2 of header, a 4-byte payload): a peer whose TCP only
acknowledged the ping itself has read nothing."""


def _socket_of(transport: Any) -> Any:
    return transport.get_extra_info("socket")


def _acked(transport: Any) -> int | None:
    """The bytes of the connection the peer has acknowledged (None: not a Linux TCP socket)."""
    try:
        info = _socket_of(transport).getsockopt(
            socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_ACKED + 8
        )
    except (AttributeError, OSError):
        return None
    if len(info) < _TCP_INFO_ACKED + 8:
        return None
    return int.from_bytes(info[_TCP_INFO_ACKED : _TCP_INFO_ACKED + 8], sys.byteorder)


def text_frame_header(length: int) -> bytes:
    """The header of one unmasked, unfragmented, uncompressed text frame of ``length`` bytes."""
    if length < 126:
        return _SHORT(_TEXT, length)
    if length < 65536:
        return _MEDIUM(_TEXT, 126, length)
    return _LONG(_TEXT, 127, length)


def text_frame(text: str) -> bytes:
    """One whole unmasked, uncompressed text frame carrying ``text``."""
    payload = text.encode()
    return text_frame_header(len(payload)) + payload


def event_frame(prefix: str, event_json: str) -> bytes:
    """The frame of an ``event`` message: ``prefix`` (``protocol.event_prefix``), the event's
    JSON, and the closing brace."""
    payload = (prefix + event_json + "}").encode()
    return text_frame_header(len(payload)) + payload


class _Inbox:
    """What uvicorn's protocol needs of its ``asyncio.Queue`` of ASGI receive events
    (``put_nowait``, ``empty``), without the queue's three deques and Event (about 3 KiB per
    connection, measured with tracemalloc). Only the connection's app task reads it, through
    ``take``: a future, not a coroutine, so a connection waiting for its next message holds no
    frame for it (nor for ``receive``: ``BatchingWebSocketProtocol.receive``)."""

    __slots__ = ("_items", "_owner", "_waiter")

    def __init__(self, owner: BatchingWebSocketProtocol) -> None:
        self._items: collections.deque[Any] | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._owner = owner
        """Told once the reader has taken an item (``_taken``: it resumes reading). Not a bound
        method: that would be an object more per connection."""

    def put_nowait(self, item: Any) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # (cancelled: its reader is gone, the item waits)
                waiter.set_result(item)
                # Taken: once whoever put it is done (uvicorn pauses reading right after).
                waiter.get_loop().call_soon(self._owner._taken)
                return
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)

    def empty(self) -> bool:
        return not self._items

    def take(self) -> asyncio.Future[Any]:
        """The next item: a future, done at once when one is waiting."""
        taken = asyncio.get_running_loop().create_future()
        items = self._items
        if items:
            taken.set_result(items.popleft())
            if not items:
                self._items = None  # an idle connection keeps no deque
            self._owner._taken()
        else:
            self._waiter = taken
        return taken


class BatchingWebSocketProtocol(WebSocketsSansIOProtocol):
    """Handed to ``uvicorn.Config(ws=...)`` by ``deltagate serve``."""

    # uvicorn's protocol gives each connection 37 attributes. Past 30, CPython 3.11 no longer
    # shares an instance dict's keys among a class's instances: each connection had a table of
    # its own (1.5 KiB, tracemalloc of 2,000 idle subscribers). These live in slots instead
    # (the same attributes, stored apart), so the dict keeps the rest under shared keys.
    __slots__ = (
        "client",
        "close_sent",
        "close_timer",
        "curr_msg_data_type",
        "disconnected",
        "frames",
        "handshake_complete",
        "handshake_initiated",
        "initial_response",
        "last_ping_rtt",
        "pending_ping_payload",
        "ping_mark",
        "ping_sent_at",
        "ping_slot",
        "ping_timer",
        "pong_timer",
        "read_paused",
        "request",
        "response",
        "scheme",
        "scope",
        "server",
        "transport",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox(self)  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.ping_slot: int | None = None
        """Its slot in the loop's ping wheel (``_pings``), while it is in it."""
        self.ping_mark: int | None = None
        """While a ping waits for its pong: the bytes of the connection the peer had
        acknowledged when it was sent or its deadline last started again (None: TCP does not
        say, not a Linux TCP socket)."""

    def receive(self) -> asyncio.Future[Any]:  # type: ignore[override]
        """The ASGI ``receive``: a future (uvicorn's is a coroutine, a frame each connection
        holds while it waits, as is the inbox's ``get``)."""
        return self.queue.take()  # type: ignore[attr-defined, no-any-return]

    def _taken(self) -> None:
        """The app took a message: reading resumes once it has taken every one (uvicorn reads
        a message at a time), as uvicorn's ``receive`` does, and the peer reads what was
        written to it (``handle_ping``)."""
        if self.read_paused and self.queue.empty() and self.writable._set:  # type: ignore[attr-defined]
            self.read_paused = False
            self.transport.resume_reading()

    def handle_ping(self) -> None:
        """The library answered a ping with a pong, which uvicorn writes at once. A peer that
        sends pings and reads nothing would fill the pod's memory with pongs (420 MB of pings
        in 23 s grew a pod by 390 MiB, beside the budget of what it queues): once the transport
        is above its high-water mark, the connection is not read until the peer has read
        (``resume_writing``)."""
        super().handle_ping()
        if not self.writable._set and not self.read_paused:  # type: ignore[attr-defined]
            self.read_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._taken()

    # -- keep-alive pings: a slot in a wheel, not a timer handle per connection --------------

    def schedule_ping(self) -> None:
        """uvicorn asks for the next ping (once keep-alive starts, then after each pong): the
        wheel beats the connection once per interval from when it joined."""
        if self.ping_slot is None:
            assert self.ping_interval is not None
            self.ping_slot = _pings(self.ping_interval).add(self)

    def keep_alive(self) -> None:
        """Its beat: a ping, unless the last one is still waiting for its pong (whose own
        deadline, uvicorn's ``ws_ping_timeout``, closes a connection that does not answer)."""
        if self.pending_ping_payload is None:
            self.send_keepalive_ping()

    def send_keepalive_ping(self) -> None:
        super().send_keepalive_ping()
        self.ping_mark = _acked(self.transport) if self.pending_ping_payload else None

    def keepalive_timeout(self) -> None:
        """The pong is late. A reader working through a backlog (a long replay read at its own
        pace) reads the ping only after what was queued before it, ours and the kernels', long
        after the deadline: it cannot answer what it has not read. TCP tells how far it reads:
        the bytes it acknowledges grow as its application frees its receive buffer. While they
        grow by more than a ping's frame, the deadline starts again; a peer that acknowledged
        nothing more is cut as uvicorn cuts it (a slow reader's own bounds are the session's:
        demotion, then 4008)."""
        acked_before = self.ping_mark
        if acked_before is not None and not self.close_sent and not self.transport.is_closing():
            acked = _acked(self.transport)
            if acked is not None and acked > acked_before + _PING_FRAME:
                self.ping_mark = acked
                assert self.ping_timeout is not None
                self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
                return
        self.ping_mark = None
        super().keepalive_timeout()

    def stop_keepalive(self) -> None:
        self.ping_mark = None
        if self.ping_slot is not None:
            assert self.ping_interval is not None
            _pings(self.ping_interval).discard(self, self.ping_slot)
            self.ping_slot = None
        super().stop_keepalive()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][EXTENSION] = self
        # The upgrade request is in the scope now. The protocol kept it, and so does the
        # library's parser (a local of its generator, for the connection's life): let go of
        # its headers (about 2 KiB per connection).
        self.request = None  # type: ignore[assignment]
        event.headers.clear()

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete:
            self.response = None  # type: ignore[assignment]  # sent: no need to keep it

    @property
    def raw(self) -> bool:
        """Frames may be written as built by ``text_frame`` (no extension transforms them)."""
        return not self.conn.extensions

    def buffered(self) -> int:
        return int(self.transport.get_write_buffer_size())

    def buffered_counter(self) -> Callable[[], int]:
        """``buffered`` for an outbox that asks after every write: the transport's own method
        (no Python frame in between; the transport is the connection's for its whole life)."""
        return self.transport.get_write_buffer_size  # type: ignore[no-any-return]

    def _can_write(self) -> bool:
        """The transport takes writes now (below its high-water mark) and the connection is
        open. ``write_frames`` checks the same, inline."""
        return (
            self.writable.is_set()
            and not self.disconnected
            and not self.close_sent
            and self.conn.state is _OPEN
        )

    def write_frames(self, frames: list[bytes]) -> bool:
        """Write whole frames (``text_frame``) in one transport write, or return False (nothing
        written) when the transport is above its high-water mark or the connection is going
        away. Only for ``raw`` connections."""
        # ``_can_write``, inline: this runs once per delivery when every event gets its own
        # write (py-spy: the check's calls cost about as much as the write's own Python).
        if not (
            self.writable._set  # type: ignore[attr-defined]  # our _Flag
            and not self.disconnected
            and not self.close_sent
            and self.conn.state is _OPEN
        ):
            return False
        if len(frames) == 1:
            self.transport.write(frames[0])
        else:
            self.transport.writelines(frames)
        return True

    def write_texts(self, texts: list[str]) -> bool:
        """Like ``write_frames`` for text messages, framed (and compressed, if negotiated) by
        the library for this connection."""
        if not self._can_write():
            return False
        conn = self.conn
        for text in texts:
            conn.send_text(text.encode())
        self.transport.write(b"".join(conn.data_to_send()))
        return True

    async def send_texts(self, texts: list[str]) -> None:
        """Send each of ``texts`` as one text message, in order, with one transport write.

        Like ASGI's ``websocket.send``: waits while the transport is above its high-water mark,
        raises :class:`ClientDisconnected` (an ``OSError``) once the connection is going away.
        """
        if not self.writable.is_set():
            await self.writable.wait()
        if not self.write_texts(texts):
            raise ClientDisconnected()

    def abort_connection(self, code: int, reason: str, linger: float = 0.0) -> None:
        """Cut a connection whose client stopped reading: queue the close frame after what the
        transport holds and stop sending anything else. Without ``linger`` the transport is
        dropped with whatever it buffered, so the memory goes now (the budget's cut). With it,
        the transport is closed instead and dropped only ``linger`` seconds later: a client that
        reads again meanwhile gets what was buffered, then the close frame, and learns why
        (4008) rather than seeing the connection reset. What it holds meanwhile is bounded: the
        outbox writes to it only while it is under its high-water mark."""
        conn = self.conn
        if not self.close_sent and conn.state is State.OPEN and not self.transport.is_closing():
            conn.send_close(code, reason)
            self.close_sent = True
            self.transport.write(b"".join(conn.data_to_send()))
        if linger > 0:
            self.transport.close()  # (flushes its buffer first, as far as the client reads)
            self.loop.call_later(linger, self.transport.abort)  # (nothing, once it closed)
            # The app is done with it now, not when the client reads or the linger ends: its
            # session ends and stops counting toward the pod's and its key's connections.
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code})
            return
        self.transport.abort()


_WHEELS: PerLoop[dict[float, Heartbeats]] = PerLoop(dict)
"""Each loop's ping wheels, by interval."""


def _pings(interval: float) -> Heartbeats:
    """The running loop's wheel of keep-alive pings every ``interval`` seconds."""
    wheels = _WHEELS.get()
    wheel = wheels.get(interval)
    if wheel is None:
        wheel = wheels[interval] = Heartbeats(interval)
    return wheel
