"""A raw Server-Sent Events client for the tests, curl-like: one HTTP/1.1 GET over a plain
socket, the chunked body decoded and parsed as text/event-stream by hand (no SSE library, so
what the pod writes is what is checked). It records every message, comment and ``retry``, and,
like a browser's ``EventSource``, the last ``id`` it saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode


@dataclass
class Message:
    event: str
    data: Any
    id: str | None


@dataclass
class SseClient:
    port: int
    store: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    last_event_id: str | None = None
    rcvbuf: int | None = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    error_body: Any = None
    messages: list[Message] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    ended: bool = False
    _task: asyncio.Task[None] | None = None
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return [m.data for m in self.messages if m.event == "event"]

    @property
    def positions(self) -> list[int]:
        return [e["globalPosition"] for e in self.events]

    def named(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m.event == kind]

    def query(self) -> str:
        pairs: list[tuple[str, str]] = []
        for name, value in self.params.items():
            for v in value if isinstance(value, list) else [value]:
                pairs.append((name, v if isinstance(v, str) else json.dumps(v)))
        return urlencode(pairs)

    async def open(self, *, read: bool = True) -> SseClient:
        """Connect and read the response head; then (``read``) keep reading in a task."""
        sock = socket.socket()
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        limit = 2**16 if self.rcvbuf is None else self.rcvbuf
        self._reader, self._writer = await asyncio.open_connection(sock=sock, limit=limit)
        headers = {"Host": f"127.0.0.1:{self.port}", "Accept": "text/event-stream"}
        headers |= self.headers
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        path = f"/event-stores/{self.store}/events/sse"
        query = self.query()
        head = f"GET {path}{'?' + query if query else ''} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self._writer.write(head.encode())
        status_line = await asyncio.wait_for(self._reader.readline(), 10)
        self.status = int(status_line.split()[1])
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            self.response_headers[name.strip().lower()] = value.strip()
        if self.status != 200:
            length = int(self.response_headers.get("content-length", "0"))
            self.error_body = json.loads(await self._reader.readexactly(length))
            self.close()
            return self
        if read:
            self.start_reading()
        return self

    def start_reading(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        buffer = ""
        try:
            while True:
                size_line = await self._reader.readline()
                if not size_line:
                    break
                size = int(size_line.strip() or b"0", 16)
                if size == 0:
                    await self._reader.readline()
                    break
                chunk = await self._reader.readexactly(size)
                await self._reader.readexactly(2)
                buffer += chunk.decode()
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    self._dispatch(block)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.ended = True
            if self._writer is not None:
                self._writer.close()

    def _dispatch(self, block: str) -> None:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "retry" in fields:
            self.retry = int(fields["retry"])
        if "id" in fields:
            self.last_event_id = fields["id"]
        if "data" in fields:
            data = json.loads(fields["data"])
            self.messages.append(Message(fields.get("event", "message"), data, fields.get("id")))

    async def wait(
        self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; got {[m.event for m in self.messages][-20:]}"
                )
            await asyncio.sleep(0.02)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        self.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
