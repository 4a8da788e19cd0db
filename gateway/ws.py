"""The WebSocket endpoint ``/event-stores/{store}/events/ws`` and the pod's set of sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from broker import BrokerError, StoreAlreadyExists, valid_store_name
from broker.aio import cancel_and_wait

from . import protocol
from .auth import Permission, check
from .errors import CLOSE_CODE, ApiError
from .runtime import Runtime, runtime_of
from .session import Session

log = logging.getLogger("deltagate.ws")


class Sessions:
    """Every open session of this pod, and the watchdog that closes the ones whose client has
    stopped reading altogether (4008)."""

    def __init__(self, slow_timeout: float) -> None:
        self.active: set[Session] = set()
        self.slow_timeout = slow_timeout
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def start(self, rt: Runtime) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(rt), name="ws watchdog")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        closing, self._closing = self._closing, set()
        await cancel_and_wait(closing)

    def _close_soon(self, session: Session, code: int, reason: str) -> None:
        """Close a session from the watchdog without waiting on it (tasks owned here)."""
        task = asyncio.get_running_loop().create_task(session.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def drain(self, window: float) -> None:
        """Close every session with 1012 after flushing what was queued for it, spread evenly
        over ``window`` seconds so the clients do not all reconnect to the other pods at once."""
        sessions = list(self.active)
        if not sessions:
            return
        gap = window / len(sessions)
        log.info("draining websockets", extra={"connections": len(sessions), "window_s": window})

        async def close_later(session: Session, delay: float) -> None:
            await asyncio.sleep(delay)
            await session.close(CLOSE_CODE["DRAINING"], "pod draining; reconnect to resume")

        await asyncio.gather(*(close_later(s, i * gap) for i, s in enumerate(sessions)))

    async def _watch(self, rt: Runtime) -> None:
        """Once a second: close sockets whose client stopped reading (4008), whose API key was
        revoked or expired, or whose token expired (4001); every 10 s, keep this pod's
        connections counting toward their keys' quotas."""
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            try:
                await self._check(rt, refresh=tick % 10 == 0)
            except BrokerError as exc:
                log.warning(
                    "session checks skipped: Redis unavailable", extra={"error": exc.message}
                )

    async def _check(self, rt: Runtime, *, refresh: bool) -> None:
        now = time.monotonic()
        wall = time.time()
        sessions = [s for s in self.active if s.state == "open"]
        for session in sessions:
            since = session.sending_since
            if since is not None and now - since > self.slow_timeout:
                log.warning(
                    "closing a connection that stopped reading",
                    extra={"store": session.store, "stalled_s": round(now - since)},
                )
                session.abort()
                self._close_soon(session, CLOSE_CODE["SLOW_CONSUMER"], "slow consumer")
        for session in sessions:
            expires = session.principal.expires_at
            if expires is not None and wall >= expires:
                what = "token" if session.principal.via_token else "API key"
                self._close_soon(
                    session,
                    CLOSE_CODE["UNAUTHORIZED"],
                    f"{what} expired: get a new one and resume from your last position",
                )
        keyed = [(s.principal.key_id, s) for s in sessions if s.principal.key_id is not None]
        if keyed:
            alive = await rt.keys.alive(list({key_id for key_id, _ in keyed}))
            for key_id, session in keyed:
                if key_id not in alive:
                    self._close_soon(session, CLOSE_CODE["UNAUTHORIZED"], "API key revoked")
        if refresh:
            await rt.limits.refresh(
                [(key_id, s.conn_id) for key_id, s in keyed if s.conn_id is not None]
            )


async def _close_before_start(ws: WebSocket, code: int, reason: str) -> None:
    await ws.accept()
    await ws.close(code, reason[:120])


PATH = "/event-stores/{store}/events/ws"


async def events_ws(ws: WebSocket) -> None:
    """The endpoint, mounted as a plain Starlette route: FastAPI's websocket routing keeps
    dependency state for the whole connection (about 6 KB each, measured by bench/fanout.py)."""
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
        principal = await rt.auth.authenticate_ws(ws, store)
        check(principal, Permission.CONNECT, store)
        check(principal, Permission.READ, store)
        if not await rt.store_exists(store):
            if not (rt.settings.auto_create and valid_store_name(store)):
                raise ApiError("EVENT_STORE_NOT_FOUND", f"event store '{store}' does not exist")
            with contextlib.suppress(StoreAlreadyExists):
                await rt.stores.create(store)
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
    session = Session(
        ws,
        store=store,
        hub=rt.hub,
        metrics=metrics,
        max_subscriptions=settings.max_subscriptions_per_connection,
        outbox_frames=settings.ws_send_queue,
        outbox_bytes=settings.ws_send_queue_bytes,
        principal=principal,
        limiter=rt.limits,
        conn_id=conn_id,
    )
    rt.sessions.active.add(session)
    metrics.ws_connections.inc()
    session.start()
    try:
        connect_filter = ws.query_params.get("filter")
        if connect_filter:
            try:
                await session.subscribe(protocol.parse_connect_filter(connect_filter))
            except protocol.ProtocolError as exc:
                session.reply(protocol.error(exc.code, exc.message, exc.subscription_id))
        while session.state == "open":
            message = await ws.receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                session.state = "closing"
                break
            text = message.get("text")
            if text is None:
                session.reply(
                    protocol.error(
                        "INVALID_MESSAGE", "binary frames are not supported; send JSON text"
                    )
                )
                continue
            await session.handle(text)
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
