"""The HTTP/1.1 client deliveries are made with: POSTs to one origin over a small pool of
keep-alive connections (``Origin``), each an asyncio protocol whose answers llhttp parses
(``httptools``, which uvicorn[standard] installs).

Why not a client library: a delivery needs one thing from its answer, the status, and a bare
keep-alive POST loop on the bench host (bench/webhooks.py, "Against the ceiling of a delivery")
costs ~70 us of CPU per request with aiohttp and ~290 us with httpcore, against ~13 us for the
floor of a POST from Python (asyncio streams reading only the status line); this client costs
about twice the floor. What it does, and nothing else:

- one write per request (head and body joined); the head's fixed part is built by the caller;
- the answer's status from the parser, interim (1xx) answers skipped: once a head has arrived
  its status is the answer, even if the connection ends before the body does; the body is read
  and dropped up to ``BODY_LIMIT`` bytes, past which the connection is closed, as it is when the
  server says ``Connection: close``, when the body runs to the end of the connection, or after
  any error (a connection goes back to the pool only after a complete answer);
- one deadline per request, the connection's opening included (one timer);
- connections only to the addresses ``resolve`` hands over (the SSRF guard:
  ``targets.GuardedResolver``), with TLS verified against the URL's host name.

Errors: ``TimeoutError`` past the deadline, ``OSError`` for whatever kept the connection from
answering (``ConnectionError``, TLS errors, a refused address), ``ProtocolError`` (an OSError) for
an answer that is not HTTP.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable

import httptools

from ..aio import expire

BODY_LIMIT = 64 * 1024
"""Answer body bytes read (then dropped) so a connection can be reused; past it, it is closed."""

Resolve = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the checked addresses to connect to, in order."""


class ProtocolError(OSError):
    """The answer is not HTTP/1.x (or asks to switch protocols)."""


class Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request at a time (``waiter``)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.status = 0
        self.read = 0
        self.reusable = False
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: an idle connection must not talk
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"not an HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.status >= 200:
                # The answer's head arrived: its status is the answer (a body running to the end
                # of the connection ends here; a cut one is dropped like any other).
                waiter.set_result(self.status)
            else:
                waiter.set_exception(
                    ConnectionResetError("the connection closed before the answer was complete")
                )

    # -- httptools callbacks ----------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, chunk: bytes) -> None:
        self.read += len(chunk)
        if self.read > BODY_LIMIT:
            self._answered(reusable=False)

    def on_message_complete(self) -> None:
        if self.status < 200:
            self.status = 0  # an interim answer (100 Continue, 103 Early Hints): the next is ours
            return
        self._answered(reusable=self.parser.should_keep_alive())

    # -- the request's side -----------------------------------------------------------------------

    def _answered(self, *, reusable: bool) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(self.status)
        self.reusable = reusable
        if not reusable:
            self.close()

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class Origin:
    """Keep-alive connections to one ``scheme://host:port``: at most ``limit`` open, the most
    recently used reused first, those idle for ``idle_seconds`` closed. ``close()`` when done."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        resolve: Resolve,
        limit: int,
        idle_seconds: float,
    ) -> None:
        self.host = host
        self.port = port
        self._tls = tls
        self._resolve = resolve
        self._limit = limit
        self._idle_seconds = idle_seconds
        self._idle: deque[Connection] = deque()
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop it runs on, asked for once: on Python 3.11 ``asyncio.get_running_loop()``
        is a ``getpid`` system call each time (CPython gh-100363)."""

    async def request(self, data: bytes, seconds: float) -> int:
        """Send ``data`` (a whole request) and return the answer's status within ``seconds``."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        conn = self._reuse(loop.time())
        if conn is None:
            async with asyncio.timeout_at(deadline):
                conn = await self._open_one()
        waiter: asyncio.Future[int] = loop.create_future()
        conn.waiter, conn.status, conn.read, conn.reusable = waiter, 0, 0, False
        timer = loop.call_at(deadline, expire, waiter)
        try:
            assert conn.transport is not None
            conn.transport.write(data)
            status = await waiter
        except BaseException:
            conn.close()  # (cancelled or failed: what the connection holds is unknown)
            self._drop()
            raise
        finally:
            timer.cancel()
            conn.waiter = None
        if conn.reusable and not conn.closed and not self._closed:
            conn.idle_since = loop.time()
            self._idle.append(conn)
            if self._waiting:
                _wake(self._waiting)
        else:
            conn.close()
            self._drop()
        return status

    def _reuse(self, now: float) -> Connection | None:
        idle = self._idle
        oldest = now - self._idle_seconds
        while idle and (idle[0].idle_since < oldest or idle[0].closed):
            idle.popleft().close()
            self._open -= 1
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            self._open -= 1
        return None

    async def _open_one(self) -> Connection:
        """A new connection, once fewer than ``limit`` are open (or an idle one freed)."""
        loop = asyncio.get_running_loop()
        while self._open >= self._limit:
            wake: asyncio.Future[None] = loop.create_future()
            self._waiting.append(wake)
            try:
                await wake
            except BaseException:
                if wake in self._waiting:
                    self._waiting.remove(wake)
                elif self._waiting:
                    _wake(self._waiting)  # (woken, then cancelled: pass the turn on)
                raise
            conn = self._reuse(loop.time())
            if conn is not None:
                return conn
        self._open += 1
        try:
            return await self._connect(loop)
        except BaseException:
            self._drop()
            raise

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Connection:
        if self._closed:
            raise ConnectionAbortedError("the client is closed")
        failure: OSError | None = None
        for address in await self._resolve(self.host, self.port):
            try:
                _, conn = await loop.create_connection(
                    Connection,
                    address,
                    self.port,
                    ssl=self._tls,
                    server_hostname=self.host if self._tls is not None else None,
                )
                return conn
            except OSError as exc:
                failure = exc
        raise failure or OSError(f"{self.host} resolves to no address")

    def _drop(self) -> None:
        self._open -= 1
        if self._waiting:
            _wake(self._waiting)

    def close(self) -> None:
        """Close every idle connection; those in use close when their request ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
            self._open -= 1
        while self._waiting:
            _wake(self._waiting)


def _wake(waiting: deque[asyncio.Future[None]]) -> None:
    while waiting:
        wake = waiting.popleft()
        if not wake.done():
            wake.set_result(None)
            return
