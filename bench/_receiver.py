"""The webhook receiver of ``bench/webhooks.py``: a minimal keep-alive HTTP/1.1 server (an
asyncio protocol answering 204 at once, parsing just enough: the head's Content-Length) and the
``Sink`` that counts what it received, when, and per ``seq`` the time of arrival. It costs a small
fraction of what the dispatcher spends per request.

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Receiver(asyncio.Protocol):
    """One connection of the receiver: parses requests just enough (Content-Length) and answers
    each with 204 at once."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop >= 0 else len(head)]) if at >= 0 else 0
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            self.sink.got(body)
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")


@dataclass
class Sink:
    """What the receiver saw: how many, first and last receipt, and per ``seq`` the time."""

    count: int = 0
    body_bytes: int = 0
    first: float = 0.0
    last: float = 0.0
    arrived: dict[int, float] = field(default_factory=dict)
    track: bool = False
    wanted: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    mark: int = 0
    """At this count (0: none) ``on_mark`` is called, with the time: where a measurement of the
    steady state starts, past the start-up (connections opened, the subscription loaded)."""
    on_mark: Callable[[float], None] | None = None

    def reset(
        self,
        wanted: int,
        *,
        track: bool = False,
        mark: int = 0,
        on_mark: Callable[[float], None] | None = None,
    ) -> None:
        self.count, self.wanted, self.track = 0, wanted, track
        self.mark, self.on_mark = mark, on_mark
        self.body_bytes = 0
        self.arrived.clear()
        self.enough.clear()

    def got(self, body: bytes) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += 1
        if self.count == self.mark and self.on_mark is not None:
            self.on_mark(now)
        self.body_bytes += len(body)
        self.last = now
        if self.track:
            at = body.index(b'"seq":') + 6
            end = at
            while body[end : end + 1].isdigit():
                end += 1
            self.arrived.setdefault(int(body[at:end]), now)
        if (len(self.arrived) if self.track else self.count) >= self.wanted:
            self.enough.set()

    async def wait(self, seconds: float) -> None:
        """Until ``wanted`` arrived, or ``seconds`` passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.enough.wait(), seconds)
