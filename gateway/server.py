"""The pod's HTTP servers: uvicorn with bounds on what a client may hold before its request even
starts, and, when ``DELTAGATE_METRICS_PORT`` is set, a second small server with ``/metrics`` alone.

Pods belong behind a proxy (nginx, an ingress) that buffers and times out slow clients; these
bounds are what a pod reached directly still guarantees (docs/operations.md, "Behind a proxy").
uvicorn has no setting for the first three (its ``h11_max_incomplete_event_size`` binds only the
slower h11 parser), so ``BoundedHttpProtocol`` adds them to its httptools protocol:

- a request's line and headers are at most ``max_header_bytes``: past that, 431 and the connection
  closes, so a client never makes the pod buffer more than that plus two reads;
- they arrive within ``header_timeout`` seconds of connecting, or of the next request's first byte
  on a kept-alive connection (an idle kept-alive connection is uvicorn's ``timeout_keep_alive``);
  otherwise the connection is closed;
- at most ``max_pending_headers`` connections wait for their headers at once: a new one closes
  the oldest that sent part of a head, or else the oldest that sent nothing for ``MIN_WAIT``
  seconds (a burst of fresh connections not read yet is never cut), so slow clients cannot use up
  the pod's file descriptors and lock out the next ``/healthz``;
- at most ``MAX_PIPELINED`` requests wait behind the one being answered on a connection (HTTP/1.1
  pipelining): uvicorn queues each pipelined request (about 1.6 KB) and reads on after every
  answer, so a client that sends requests without reading the answers would make the pod parse
  and hold them without end (400,000 ``GET /healthz`` in 13.6 MB grew a pod by 650 MiB and took
  30 s of its CPU); one more closes the connection;
- ``limit_concurrency``, counted as uvicorn counts it (open connections, WebSockets included, and
  requests in flight), but a request or a WebSocket upgrade (uvicorn lets those through) that
  would pass it gets the contract's 503 ``UNAVAILABLE`` with ``Retry-After``, and the probes are
  always answered: a full pod is not a dead one.

Each HTTP request's scope also carries ``extensions[ABORT_EXTENSION]``, which closes the connection
at once: the last resort for a streaming response whose client stopped reading.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from typing import Any, ClassVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from . import process
from .errors import ApiError
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("deltagate.server")

MIN_WAIT = 1.0
"""Seconds a connection that sent nothing yet waits before a newer one may push it out."""
PROBES = frozenset({b"/healthz", b"/readyz", b"/metrics"})
"""Paths answered even past ``limit_concurrency``: a busy pod is not restarted for it."""
WARN_EVERY = 10.0
MAX_PIPELINED = 32
"""Requests a connection may have queued behind the one being answered (HTTP/1.1 pipelining;
browsers never pipeline, and clients that do send a few ahead)."""
ABORT_EXTENSION = "deltagate.abort"
"""In an HTTP request's scope ``extensions``: a callable that closes the connection at once."""
OVERLOADED = ApiError(
    "UNAVAILABLE", "this pod is at its connection limit; retry", headers={"Retry-After": "1"}
).response()


class Flag:
    """What uvicorn's protocols need of an ``asyncio.Event`` (``is_set``, ``set``, ``clear``,
    ``wait``), with its waiters' list made only when someone waits: an Event makes a deque at
    once (about 700 bytes), and uvicorn makes two for every HTTP connection and request (the
    transport's "writable", a request's "message arrived") and one for a WebSocket."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, *, is_set: bool = True) -> None:
        self._set = is_set
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter


class PipelinedTooDeep(Exception):
    """Raised from the parser's callback to stop it: the rest of the read is not parsed."""


class _Pipeline(list[Any]):
    """uvicorn's queue of pipelined requests (``appendleft``, ``pop``) as a list: empty, a list
    is 56 bytes where a deque is about 700, and pipelining is rare and shallow."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


class PendingHeads:
    """The connections of one server waiting for their request line and headers, oldest first,
    in two kinds: those that sent part of a head (a slow sender: first to go when there are too
    many) and those not read from yet (perhaps only because the loop has not got to them in a
    burst of new connections: they go only once they have waited ``MIN_WAIT`` seconds)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.partial: dict[BoundedHttpProtocol, None] = {}  # insertion order is age order
        self.unread: dict[BoundedHttpProtocol, float] = {}

    def add(self, conn: BoundedHttpProtocol, now: float, *, partial: bool) -> None:
        while len(self.partial) + len(self.unread) >= self.limit:
            if self.partial:
                victim = next(iter(self.partial))
            else:
                victim, since = next(iter(self.unread.items()))
                if now - since < MIN_WAIT:
                    break
            self.discard(victim)
            victim.drop("the pod had too many connections waiting for headers")
        if partial:
            self.partial[conn] = None
        else:
            self.unread[conn] = now

    def sent_part(self, conn: BoundedHttpProtocol) -> None:
        if self.unread.pop(conn, None) is not None:
            self.partial[conn] = None

    def discard(self, conn: BoundedHttpProtocol) -> None:
        self.partial.pop(conn, None)
        self.unread.pop(conn, None)


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds of this module. ``bounded_protocol`` makes one
    subclass per server, holding that server's settings and waiting connections."""

    max_header_bytes: ClassVar[int]
    header_timeout: ClassVar[float]
    concurrency: ClassVar[int | None]
    pending: ClassVar[PendingHeads]
    warned_at: ClassVar[float] = float("-inf")

    # uvicorn's protocol and these bounds give each connection 32 attributes. Past 30, CPython
    # 3.11 no longer shares an instance dict's keys among a class's instances, and each
    # connection (an SSE response holds one for its whole life) gets a table of its own. These
    # live in slots instead, so the dict keeps the rest under shared keys (as
    # ``BatchingWebSocketProtocol`` does for WebSockets).
    __slots__ = (
        "client",
        "cycle",
        "deadline",
        "expect_100_continue",
        "head_bytes",
        "headers",
        "heads",
        "in_head",
        "scheme",
        "scope",
        "server",
        "timeout_keep_alive_task",
        "too_deep",
        "url",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_head = False  # from a request's first byte (or the connection) to its headers
        self.heads = 0  # requests begun on this connection
        self.head_bytes = 0
        self.deadline: asyncio.TimerHandle | None = None
        self.pipeline = _Pipeline()  # type: ignore[assignment]
        self.too_deep = False

    # -- the head of each request: begun, counted, finished ------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow._is_writable_event = Flag()  # type: ignore[assignment]  # set, as uvicorn's
        self._head_begins(partial=False)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.heads += 1
        self.head_bytes = 0
        self._head_begins(partial=True)

    def _head_begins(self, *, partial: bool) -> None:
        self.in_head = True
        if self.deadline is None:
            self.deadline = self.loop.call_later(self.header_timeout, self._too_slow)
            self.pending.add(self, self.loop.time(), partial=partial)

    def _head_ends(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.pending.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_ends()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = (self.in_head, self.heads)
        super().data_received(data)
        if not self.in_head or self.transport.is_closing():
            return
        self.pending.sent_part(self)
        if before == (True, self.heads):
            # The whole read belongs to one head, still incomplete: the parser holds it all. A
            # read in which a head began is not counted (it may end a body or a request before
            # it), so a head is refused past the limit plus at most one read.
            self.head_bytes += len(data)
            if self.head_bytes > self.max_header_bytes:
                self._refuse(
                    431, f"request line and headers exceed {self.max_header_bytes} bytes\n"
                )

    def _too_slow(self) -> None:
        self.deadline = None
        self.drop(f"headers not complete within {self.header_timeout} s")

    def drop(self, why: str) -> None:
        self._head_ends()
        if not self.transport.is_closing():
            log.debug("closing a connection", extra={"client": self.client, "reason": why})
            self.transport.close()

    def _refuse(self, status: int, text: str) -> None:
        body = text.encode()
        self._head_ends()
        self.transport.write(
            STATUS_LINE[status]
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            + body
        )
        self.transport.close()

    # -- limit_concurrency ------------------------------------------------------------------------

    def _overloaded(self) -> bool:
        """Whether this request would pass the limit: ``connections`` holds this one too,
        ``tasks`` the other requests and WebSockets in flight."""
        limit = self.concurrency
        return limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit)

    def _say_overloaded(self) -> None:
        """A warning at most every ``WARN_EVERY`` seconds: an overload is no time to flood logs."""
        now = self.loop.time()
        if now - self.warned_at >= WARN_EVERY:
            type(self).warned_at = now
            log.warning(
                "connection limit reached: answering 503 UNAVAILABLE",
                extra={"limit": self.concurrency, "connections": len(self.connections)},
            )

    def on_headers_complete(self) -> None:
        self._head_ends()
        cycle = self.cycle
        if (
            cycle is not None
            and not cycle.response_complete
            and len(self.pipeline) >= MAX_PIPELINED
        ):
            # One more queued request: stop parsing (the parser raises, and uvicorn answers a
            # parser error with a 400 and a close: ``send_400_response`` closes instead).
            self.too_deep = True
            raise PipelinedTooDeep()
        # What ASGI cannot say: drop this connection now. A streaming response (SSE) whose
        # client stopped reading cannot end itself (ending waits for the client to read), and
        # close() would wait to flush: abort() drops the connection and its buffer.
        self.scope["extensions"] = {ABORT_EXTENSION: self.transport.abort}  # type: ignore[dict-item]
        app, before = self.app, self.cycle
        if self._overloaded() and self.url.partition(b"?")[0] not in PROBES:
            self.app = OVERLOADED  # this request only: answered without reaching the app
            self._say_overloaded()
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        if self.cycle is not before:  # a request (not an upgrade): its task has not run yet,
            # and the parser sets this (at the request's end) only after this returns
            self.cycle.message_event = Flag(is_set=False)  # type: ignore[assignment]

    def send_400_response(self, msg: str) -> None:
        if not self.too_deep:
            super().send_400_response(msg)
            return
        log.info(
            "closing a connection: too many pipelined requests",
            extra={"client": self.client, "limit": MAX_PIPELINED},
        )
        # The answers to the requests before it are not all written yet: no answer to this one
        # can be told apart from theirs, so the connection just ends.
        self.transport.close()

    def handle_websocket_upgrade(self) -> None:
        if not self._overloaded():
            super().handle_websocket_upgrade()
            return
        self._say_overloaded()
        head = [STATUS_LINE[OVERLOADED.status_code]]
        head += [name + b": " + value + b"\r\n" for name, value in OVERLOADED.raw_headers]
        self.transport.write(b"".join(head) + b"connection: close\r\n\r\n" + OVERLOADED.body)
        self.transport.close()


def bounded_protocol(settings: Settings) -> type[BoundedHttpProtocol]:
    """A protocol class for one server, with ``settings``' bounds."""

    class Bounded(BoundedHttpProtocol):
        max_header_bytes = settings.max_header_bytes
        header_timeout = settings.header_timeout
        concurrency = settings.limit_concurrency or None
        pending = PendingHeads(settings.max_pending_headers)

    return Bounded


def server_config(app: Any, settings: Settings, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for one of the pod's servers."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        http=bounded_protocol(settings),
        limit_concurrency=None,  # BoundedHttpProtocol applies settings.limit_concurrency
        log_config=None,
        proxy_headers=False,  # (the pod's app applies them itself: app.create_app)
        **options,
    )


def raise_open_files_limit() -> int:
    """Raise this process' soft limit on open files to its hard limit (as Go's runtime does):
    every connection holds a descriptor, and a soft limit of 1024 is common. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit", extra={"error": str(exc)})
    return soft


# -- /metrics on its own port ---------------------------------------------------------------------


class MetricsServer:
    """``/metrics`` alone on ``DELTAGATE_METRICS_PORT``, next to the pod's main server, so the API's
    port (and so the Ingress) never exposes store names and positions. Started and stopped by the
    pod's lifespan: it keeps listening through a drain, when the main port already refuses new
    connections, so Prometheus sees the drain to its end."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        assert settings.metrics_port is not None
        self.settings = settings
        self.port = settings.metrics_port

        async def exposition(_: Request) -> Response:
            return metrics.response()

        app = Starlette(routes=[Route("/metrics", exposition)])
        self.server = process.Server(
            server_config(app, settings, self.port, lifespan="off", access_log=False)
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen, or raise ``OSError`` (the port is taken): the pod does not start without it."""
        sock = socket.create_server((self.settings.host, self.port), reuse_port=False)
        self.task = asyncio.get_running_loop().create_task(
            self.server.serve(sockets=[sock]), name="metrics server"
        )
        while not self.server.started and not self.task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # uvicorn has no event for "listening"; this takes ms
        if self.task.done():
            self.task.result()
        log.info("metrics served on their own port", extra={"port": self.port})

    async def stop(self) -> None:
        if self.task is not None:
            self.server.should_exit = True
            await self.task
