"""``GET /event-stores/{store}/events/sse``: the query checked, the credentials (as for the
WebSocket: an API key, or a browser token and its narrowing), the store and the connection quota,
then the subscription made, all before the response starts, so that anything wrong is an HTTP
error in the contract's format (400, 401, 403, 404, 429, 503). Then one ``SseStream``.

Query parameters: ``eventFilter`` (repeatable, or one JSON list; default ``*``, or a narrowed
token's own), ``streamId``, ``match`` and ``query`` (JSON), ``position`` (``latest``,
``earliest``, a globalPosition, or ``{"time": "<ISO 8601>"}``, or the bare time), ``epoch``, and
the credentials ``apiKey``, ``token``/``authToken``.
A ``Last-Event-ID`` header (what ``EventSource`` sends when it reconnects) overrides
``position``: the stream resumes after that globalPosition, on any pod.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope
from starlette.types import Send as AsgiSend

from broker import (
    MAX_POSITION,
    BrokerError,
    Filter,
    StartPosition,
    codec,
)

from ..auth import API_KEY_PARAM, TOKEN_PARAMS, Principal
from ..errors import ApiError, validation_error
from ..http.params import query_problem
from ..runtime import Runtime, runtime_of
from ..server import ABORT_EXTENSION
from ..ws import protocol
from ..ws.endpoint import admit
from .stream import RETRY_MS, SseStream, named

log = logging.getLogger("deltagate.sse")

PATH = "/event-stores/{store}/events/sse"
_PATH = re.compile(r"(?:/api)?/event-stores/([^/]+)/events/sse")


def match(path: str) -> str | None:
    """The store of a path that is this endpoint's (under ``/`` or ``/api``), or None."""
    found = _PATH.fullmatch(path)
    return found.group(1) if found else None


PARAMS = frozenset(
    {
        "eventFilter",
        "streamId",
        "match",
        "query",
        "position",
        "epoch",
        API_KEY_PARAM,
        *TOKEN_PARAMS,
    }
)
REPEATABLE = frozenset({"eventFilter"})
"""Repeated for several patterns; every other parameter takes one value."""
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each message on at once
]


class Subscription:
    """What one SSE request asks for."""

    __slots__ = ("epoch", "every_type", "filter", "position")

    def __init__(
        self, flt: Filter, position: StartPosition, epoch: str | None, every_type: bool = False
    ) -> None:
        self.filter = flt
        self.position = position
        self.epoch = epoch
        self.every_type = every_type
        """No ``eventFilter`` nor ``query`` was given (the default ``*``)."""


def _json_param(request: Request, name: str) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return codec.loads(raw)
    except codec.JSONDecodeError:
        raise validation_error(name, "must be JSON") from None


def parse_request(request: Request) -> Subscription:
    """The subscription a request asks for. Raises 400 ``VALIDATION_ERROR``."""
    params = request.query_params
    problem = query_problem(params, PARAMS, REPEATABLE)
    if problem is not None:
        raise problem
    patterns: str | list[Any] | None = params.getlist("eventFilter") or None
    if patterns is not None and len(patterns) == 1:
        # One pattern is a pattern (answered as one), a JSON list a list, as in a subscribe
        # message; repeated, the parameter is a list.
        one = patterns[0]
        patterns = _json_param(request, "eventFilter") if one.startswith("[") else one
    match, query = _json_param(request, "match"), _json_param(request, "query")
    every_type = patterns is None and query is None
    if every_type:
        patterns = "*"
    try:
        flt = protocol.parse_filter(patterns, params.get("streamId"), match=match, query=query)
    except protocol.ProtocolError as exc:
        field = next((n for n in ("query", "match", "streamId") if n in exc.message), None)
        raise validation_error(field or "eventFilter", exc.message) from None
    last_id = request.headers.get("last-event-id")
    position: StartPosition
    if last_id is not None:
        text = last_id.strip()
        if not (text.isdigit() and len(text) <= 16 and int(text) <= MAX_POSITION):
            raise validation_error("Last-Event-ID", "must be a globalPosition (integer >= 0)")
        position = int(text)
    else:
        raw = params.get("position")
        value: object = raw
        if raw is not None and raw.startswith("{"):
            value = _json_param(request, "position")
        elif raw is not None and raw[:1].isdigit() and not raw.isdigit():
            value = {"time": raw}  # a bare ISO 8601 time, for curl
        try:
            position = protocol.parse_position(value)
        except protocol.ProtocolError as exc:
            raise validation_error("position", exc.message.removeprefix("position: ")) from None
    epoch = params.get("epoch")
    if epoch is not None and not 0 < len(epoch) <= 128:
        raise validation_error("epoch", "must be the store's epoch (from subscribed)")
    return Subscription(flt, position, epoch, every_type)


def _narrowed(principal: Principal, flt: Filter, every_type: bool = False) -> Filter:
    """``flt`` within what the credentials allow (403 if it asks for more). Without an
    ``eventFilter`` a narrowed token's patterns (and stream, unless one is asked for) stand for
    the default ``*``: ``new EventSource(url + '?token=...')`` gets what its token allows, as a
    WebSocket's unparseable ``?filter`` does."""
    allowed = principal.narrowing
    if allowed is None:
        return flt
    if every_type:
        flt = Filter(allowed.patterns, flt.stream_id or allowed.stream_id, flt.contents)
    if not allowed.covers(flt):
        raise ApiError("FORBIDDEN", "this token does not allow that filter or stream")
    for limit in allowed.contents:  # the token's content limits hold too
        flt = flt.within(limit)
    return flt


class _Streaming(Response):
    """The response once everything was checked: runs the stream until it ends."""

    def __init__(self, rt: Runtime, stream: SseStream) -> None:  # no Response.__init__: no body
        self.rt = rt
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        rt, stream = self.rt, self.stream
        if stream.state != "open":  # closed (a drain) before it could start
            await ApiError("UNAVAILABLE", "this pod is draining; reconnect").response()(
                scope, receive, send
            )
            await _finish(rt, stream)
            return
        try:
            await stream.start(send, HEADERS)
            while stream.state == "open":
                message = await receive()
                if message["type"] == "http.disconnect":
                    if stream.state == "open":
                        stream.state = "closing"  # the client left: nothing to tell it
                    break
        finally:
            await _finish(rt, stream)


async def _finish(rt: Runtime, stream: SseStream) -> None:
    rt.sessions.active.discard(stream)
    rt.metrics.sse_connections.dec()
    stream.stats.open -= 1
    try:
        await stream.close(stream.close_code, stream.close_reason)
    finally:
        rt.metrics.sse_closes.labels(str(stream.close_code)).inc()
        with contextlib.suppress(BrokerError):
            await rt.limits.close_connection(stream.principal.key_id, stream.conn_id)


async def events_sse(request: Request) -> Response:
    """The endpoint: everything checked, then the response that streams (or the error). A GET
    comes here straight from ``gateway.app.Gateway``; the route (a plain Starlette one: a stream
    has no OpenAPI answer) serves the rest (HEAD, and the 405 of other methods)."""
    store: str = request.path_params["store"]
    rt = runtime_of(request)
    settings, metrics = rt.settings, rt.metrics
    origin = request.headers.get("origin")
    try:
        if settings.origins and origin is not None and origin not in settings.origins:
            metrics.auth_failures.labels("origin").inc()
            raise ApiError("FORBIDDEN", "origin not allowed")
        if rt.draining:
            raise ApiError(
                "UNAVAILABLE", "this pod is draining; reconnect", headers={"Retry-After": "1"}
            )
        wanted = parse_request(request)
        principal = await admit(rt, request, store)
        flt = _narrowed(principal, wanted.filter, wanted.every_type)
        conn_id = await rt.limits.open_connection(principal.key_id)
    except ApiError as exc:
        if exc.code == "FORBIDDEN":
            metrics.auth_failures.labels("forbidden").inc()
        return exc.response()
    except BrokerError as exc:
        return ApiError.from_broker(exc).response()
    stream = SseStream(
        store=store,
        principal=principal,
        conn_id=conn_id,
        outbox_frames=settings.ws_send_queue,
        outbox_bytes=settings.ws_send_queue_bytes,
        heartbeats=rt.sse_heartbeats,
        stats=rt.sse_stats,
        budget=rt.fanout.budget,
        abort=request.scope.get("extensions", {}).get(ABORT_EXTENSION),
    )
    try:
        made = await rt.fanout.subscribe(
            store, flt, stream, sub_id="sse", position=wanted.position, epoch=wanted.epoch
        )
    except BaseException as exc:
        with contextlib.suppress(BrokerError):
            await rt.limits.close_connection(principal.key_id, conn_id)
        if isinstance(exc, BrokerError):
            return ApiError.from_broker(exc).response()
        raise
    # No await since the fan-out registered the subscription: nothing of it is queued yet.
    stream.sub = made.sub
    stream.reply(f"retry: {RETRY_MS}\n\n")
    subscribed = {
        "eventFilter": wanted.filter.wire,
        "streamId": wanted.filter.stream_id,
        "position": made.head,
        "epoch": made.epoch,
    }
    # Its id is where the stream starts after: a reconnect before any event resumes there.
    stream.reply(named("subscribed", subscribed, made.sub.cursor))
    if made.reset is not None:
        stream.send_reset(made.sub, made.reset, made.epoch, made.head)
    rt.sessions.active.add(stream)
    metrics.sse_connections.inc()
    stream.stats.opened += 1
    stream.stats.open += 1
    return _Streaming(rt, stream)
