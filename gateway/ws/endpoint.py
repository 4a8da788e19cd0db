"""The WebSocket endpoint ``/event-stores/{store}/events/ws``: credentials and the store checked
before the upgrade is accepted, then one ``Session`` reading the client's messages."""

from __future__ import annotations

import contextlib
import logging
import re

from starlette.requests import HTTPConnection
from starlette.types import Receive
from starlette.websockets import WebSocket, WebSocketDisconnect

from broker import BrokerError, StoreAlreadyExists, valid_store_name

from ..auth import API_KEY_PARAM, TOKEN_PARAMS, Permission, Principal, check
from ..errors import CLOSE_CODE, ApiError
from ..http.params import query_problem
from ..runtime import Runtime, runtime_of
from . import protocol
from .session import Session

log = logging.getLogger("deltagate.ws")


async def _close_before_start(ws: WebSocket, code: int, reason: str) -> None:
    await ws.accept()
    await ws.close(code, reason[:120])


PATH = "/event-stores/{store}/events/ws"
QUERY_PARAMS = frozenset((API_KEY_PARAM, *TOKEN_PARAMS, "filter"))
"""What the upgrade request's query may name: credentials and the connect-time filter."""
_PATH = re.compile(r"(?:/api)?/event-stores/([^/]+)/events/ws")


def match(path: str) -> str | None:
    """The store of a path that is this endpoint's (under ``/`` or ``/api``), or None."""
    found = _PATH.fullmatch(path)
    return found.group(1) if found else None


async def admit(rt: Runtime, conn: HTTPConnection, store: str) -> Principal:
    """Who may stream ``store`` (WebSocket and SSE alike): credentials that may connect and read
    it, and the store itself (created here when the pod auto-creates and the key may create)."""
    principal = await rt.auth.authenticate_ws(conn, store)
    check(principal, Permission.CONNECT, store)
    check(principal, Permission.READ, store)
    if not await rt.store_exists(store):
        creatable = rt.settings.auto_create and principal.may_create_stores()
        if not (creatable and valid_store_name(store)):
            raise ApiError("EVENT_STORE_NOT_FOUND", f"event store '{store}' does not exist")
        with contextlib.suppress(StoreAlreadyExists):
            await rt.stores.create(store)
    return principal


async def events_ws(ws: WebSocket, receive: Receive | None = None) -> None:
    """The endpoint, mounted as a plain Starlette route: FastAPI's websocket routing keeps
    dependency state for the whole connection (about 6 KB each, measured by bench/fanout.py).
    Once accepted, it reads the client's messages with the server's own ``receive`` when given
    one (``app.Gateway``): Starlette's ``WebSocket.receive`` only checks the ASGI states, and
    its frame would stay under every idle connection's (224 bytes)."""
    store: str = ws.path_params["store"]
    rt = runtime_of(ws)
    settings = rt.settings
    metrics = rt.metrics
    origin = ws.headers.get("origin")
    if settings.origins and origin is not None and origin not in settings.origins:
        metrics.auth_failures.labels("origin").inc()
        await _close_before_start(ws, CLOSE_CODE["FORBIDDEN"], "origin not allowed")
        return
    if rt.draining:
        await _close_before_start(ws, CLOSE_CODE["DRAINING"], "pod is draining; reconnect")
        return
    principal = None
    conn_id = None
    try:
        principal = await admit(rt, ws, store)
        conn_id = await rt.limits.open_connection(principal.key_id)
    except ApiError as exc:
        if exc.code == "FORBIDDEN":
            metrics.auth_failures.labels("forbidden").inc()
        await _close_before_start(ws, CLOSE_CODE.get(exc.code, 1011), exc.message)
        return
    except BrokerError as exc:
        await _close_before_start(ws, CLOSE_CODE.get(exc.code, 1011), exc.message)
        return

    await ws.accept()
    # Origin and credentials are read: nothing reads the upgrade request's headers again, so
    # an idle connection keeps none of them (the scope's pairs, which Starlette's view of them
    # shares: about 0.9 KiB per connection, tracemalloc of 2,000 idle subscribers).
    headers = ws.scope.get("headers")
    if isinstance(headers, list):
        headers.clear()
    session = Session(
        ws,
        store=store,
        fanout=rt.fanout,
        metrics=metrics,
        max_subscriptions=settings.max_subscriptions_per_connection,
        outbox_frames=settings.ws_send_queue,
        outbox_bytes=settings.ws_send_queue_bytes,
        principal=principal,
        limiter=rt.limits,
        conn_id=conn_id,
        auth=rt.auth,
    )
    rt.sessions.active.add(session)
    metrics.ws_connections.inc()
    try:
        problem = query_problem(ws.query_params, QUERY_PARAMS)
        if problem is not None:
            # Never a silent superset: a misspelt ``filter`` would otherwise subscribe nothing
            # without a word. Said as every bad message is (the connection stays open).
            session.reply(protocol.error(problem.code, problem.message))
        connect_filters = ws.query_params.getlist("filter")
        if connect_filters:  # (an empty one is one that cannot be parsed)
            subscribe: protocol.Subscribe | None = None
            if len(connect_filters) == 1:
                try:
                    subscribe = protocol.parse_connect_filter(connect_filters[0])
                except protocol.ProtocolError as exc:
                    session.reply(protocol.error(exc.code, exc.message, exc.subscription_id))
            # (given twice: said above, and neither is taken, as if it could not be parsed)
            if subscribe is None:
                # As DeltaBase documents: say so, then deliver what the credentials allow.
                subscribe = protocol.Subscribe(
                    session.allowed or protocol.parse_filter("*", None), "latest", None
                )
            try:
                await session.subscribe(subscribe)
            except protocol.ProtocolError as exc:
                session.reply(protocol.error(exc.code, exc.message, exc.subscription_id))
        next_message = receive or ws.receive
        while session.state == "open":
            message = await next_message()
            kind, text = message["type"], message.get("text")
            # An idle connection waits for its next message holding none (the last one, its
            # text: ~150 bytes per connection, tracemalloc of 2,000 idle subscribers).
            del message
            if kind == "websocket.disconnect":
                session.state = "closing"
                break
            if text is None:
                session.reply(
                    protocol.error(
                        "INVALID_MESSAGE", "binary frames are not supported; send JSON text"
                    )
                )
                continue
            await session.handle(text)
            text = None
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("websocket session failed", extra={"store": store})
        session.close_code = CLOSE_CODE["INTERNAL_ERROR"]
    finally:
        rt.sessions.active.discard(session)
        metrics.ws_connections.dec()
        await session.close(session.close_code, session.close_reason)
        with contextlib.suppress(BrokerError):
            await rt.limits.close_connection(principal.key_id, conn_id)
