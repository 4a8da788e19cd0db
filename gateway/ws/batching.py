"""uvicorn's websockets-sansio protocol plus one thing ASGI cannot say: send these N text
messages in one socket write.

On a pod, fan-out time is mostly the kernel's send path: one ``send()`` per message per
connection (bench/fanout.py, profiled with py-spy: ~3/4 of the pod's CPU at 1,000 subscribers
sat in ``transport.write``). A session's writer wakes to everything queued for its connection;
through ASGI it must still hand those frames over one ``websocket.send`` at a time, each its own
write. With this protocol it frames them all and writes once, so a connection that has fallen a
few events behind catches up for the price of one write, and the ASGI layers are skipped too.

The server offers the capability as the ASGI extension :data:`EXTENSION` in the connection's
scope: ``send_texts`` (a coroutine, waits for the transport like ``websocket.send``) and
``write_texts`` (writes now or returns False, for code that must not await). A session uses
them when present and sends message by message through ASGI otherwise (another server, the
test client).
"""

from __future__ import annotations

import struct
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

EXTENSION = "deltagate.send_texts"

_TEXT = 0x81  # FIN + opcode 1 (RFC 6455 section 5.2); server frames are never masked
_SHORT = struct.Struct("!BB").pack
_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack


def text_frame_header(length: int) -> bytes:
    """The header of one unmasked, unfragmented, uncompressed text frame of ``length`` bytes."""
    if length < 126:
        return _SHORT(_TEXT, length)
    if length < 65536:
        return _MEDIUM(_TEXT, 126, length)
    return _LONG(_TEXT, 127, length)


class BatchingWebSocketProtocol(WebSocketsSansIOProtocol):
    """Handed to ``uvicorn.Config(ws=...)`` by ``deltagate serve``."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][EXTENSION] = {
                "send_texts": self.send_texts,
                "write_texts": self.write_texts,
                "buffered": self.transport.get_write_buffer_size,
                "abort": self.abort_connection,
            }

    def abort_connection(self, code: int, reason: str) -> None:
        """Cut a connection whose client stopped reading: queue the close frame (the kernel may
        still take it) and drop the transport with whatever it buffered, so the memory goes now
        rather than whenever the client reads again."""
        conn = self.conn
        if not self.close_sent and conn.state is State.OPEN and not self.transport.is_closing():
            conn.send_close(code, reason)
            self.close_sent = True
            self.transport.write(b"".join(conn.data_to_send()))
        self.transport.abort()

    async def send_texts(self, texts: list[str]) -> None:
        """Send each of ``texts`` as one text message, in order, with one transport write.

        Like ASGI's ``websocket.send``: waits while the transport is above its high-water mark,
        raises :class:`ClientDisconnected` (an ``OSError``) once the connection is going away.
        """
        if not self.writable.is_set():
            await self.writable.wait()
        if not self.write_texts(texts):
            raise ClientDisconnected()

    def write_texts(self, texts: list[str]) -> bool:
        """Like ``send_texts`` without waiting: False (and nothing written) when the transport
        is above its high-water mark or the connection is going away."""
        conn = self.conn
        if (
            not self.writable.is_set()
            or self.disconnected
            or self.close_sent
            or conn.state is not State.OPEN
        ):
            return False
        if conn.extensions:
            # A negotiated extension (permessage-deflate) transforms frames: let the library
            # frame them.
            for text in texts:
                conn.send_text(text.encode())
            data = b"".join(conn.data_to_send())
        else:
            parts: list[bytes] = []
            for text in texts:
                payload = text.encode()
                parts.append(text_frame_header(len(payload)))
                parts.append(payload)
            data = b"".join(parts)
        self.transport.write(data)
        return True
