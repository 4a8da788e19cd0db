"""The gateway application: ``create_app(settings)`` builds one pod's FastAPI app."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cached_property, partial
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route, WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from broker import (
    Archive,
    BrokerError,
    Dispatcher,
    EventLog,
    Fanout,
    KeyStore,
    Lifecycle,
    RateLimiter,
    RedisWatch,
    StoreAdmin,
    WebhookStore,
    connect,
    first_contact,
)

from . import __version__, config_file, errors, openapi, process
from .auth import Authenticator
from .http import appends, lean, operations, reads, stores, webhooks, ws_tokens
from .metrics import Metrics
from .runtime import Runtime
from .server import MetricsServer
from .settings import Settings
from .sse import endpoint as sse
from .static.routes import router as static_router
from .studio.routes import router as studio_router
from .ws import endpoint
from .ws.sessions import Sessions

log = logging.getLogger("deltagate.app")

STARTUP_ERRORS = (config_file.ConfigError, BrokerError, OSError)
"""What fails a pod's start for a reason its operator can fix, said in one line
(``Gateway._startup_words``)."""
F = TypeVar("F", bound=Callable[..., Any])


async def drain(app: FastAPI) -> None:
    """SIGTERM: readiness off and new WebSockets and SSE streams refused at once (on connections
    already open: new ones are refused from the signal on, ``process.serve``), then every open
    WebSocket closed with 1012 (and every SSE response ended) over the drain window. uvicorn then
    finishes in-flight requests."""
    rt: Runtime = app.state.runtime
    rt.draining = True
    await rt.sessions.drain(rt.settings.drain_seconds)


def _observe_n(histogram: Any, seconds: float, n: int) -> None:
    for _ in range(n):
        histogram.observe(seconds)


async def _dispatch(dispatcher: Dispatcher) -> None:
    log.info("webhook dispatcher running in this process (embedded dev mode)")
    try:
        await dispatcher.run()
    except Exception:
        log.exception("the embedded webhook dispatcher failed; webhooks are not delivered")


def _coroutine_function(function: F) -> F:
    """``function``, which returns a coroutine, marked as a coroutine function: servers and test
    clients (uvicorn, Starlette's) tell an ASGI 3 app from an ASGI 2 one by asking
    ``asyncio.iscoroutinefunction`` (``inspect``'s from Python 3.14)."""
    mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
    if mark is not None:
        return mark(function)  # type: ignore[no-any-return]
    function._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return function


class Gateway(FastAPI):
    """The pod's ASGI app. A WebSocket upgrade for the events endpoint, and the GET of their
    Server-Sent Events, go straight to their endpoints: the middleware and routing layers would
    otherwise stay on the stack, a coroutine frame each, for the whole life of every connection
    (about 8 KiB per connection, measured with tracemalloc). None of them does anything for a
    WebSocket (CORS is for HTTP, errors are the endpoint's). For SSE the endpoint answers its
    own errors too, and this class adds what the stack would: the CORS middleware's headers and
    the contract's 500 for an error nothing handled (``errors.unexpected``).

    An append (a POST to one of the ``LeanRoute``s, the most frequent request) goes straight to
    its route too, matched by the same route objects in the same order as the router would
    match them. Seven middleware and routing layers, each a coroutine call and most a wrapper
    around every ``send``, did nothing for it (``_lean`` says what each would have done) and
    cost ~12% of a pod's CPU per single-event append: 115-130 us per request with them, 97-114
    without (16 connections, 4 alternating runs of 4 s on the bench host)."""

    @_coroutine_function
    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:  # type: ignore[override]
        """The coroutine serving the connection, returned rather than awaited: this call's own
        frame would otherwise stay under every connection's for its whole life (296 bytes)."""
        kind = scope["type"]
        if kind == "websocket":
            store = endpoint.match(scope["path"])
            if store is not None:
                scope["app"] = self
                scope["path_params"] = {"store": store}
                return endpoint.events_ws(WebSocket(scope, receive, send), receive)
        elif kind == "http":
            method = scope["method"]
            if method == "POST":
                for route in self._lean_routes:
                    match, child = route.matches(scope)
                    if match is Match.FULL:
                        scope["app"] = self
                        scope.update(child)
                        return self._lean(route, scope, receive, send)
            elif method == "GET" and scope["path"].endswith("/sse"):
                store = sse.match(scope["path"])
                if store is not None:
                    scope["app"] = self
                    scope["path_params"] = {"store": store}
                    return self._sse(scope, receive, send)
        elif kind == "lifespan":
            return super().__call__(scope, receive, self._startup_words(send))
        return super().__call__(scope, receive, send)

    def _startup_words(self, send: Any) -> Any:
        """The server's ``send`` for the lifespan, telling a start that failed for a reason an
        operator can fix (``STARTUP_ERRORS``: a config file Redis refuses, Redis or the archive
        unreachable, a port taken) in one line rather than the traceback Starlette puts in the
        message; any other failure keeps its traceback (a bug to report)."""

        async def words(message: Any) -> None:
            problem = getattr(self.state, "startup_problem", None)
            if message["type"] == "lifespan.startup.failed" and problem is not None:
                message = {**message, "message": f"the pod could not start: {problem}"}
            await send(message)

        return words

    async def _lean(self, route: lean.LeanRoute, scope: Any, receive: Any, send: Any) -> None:
        """An append (a ``LeanRoute``, all POSTs) served as the stack would serve it: its errors
        answered by the app's exception handlers (``errors.install``) inside the CORS headers,
        an error nothing handled by ``errors.unexpected`` outside them, then raised for the
        server to log. The other layers have nothing to do for it: FastAPI's telemetry is off,
        the app sets no body limit of its own (the handler bounds the body), a lean route has no
        dependency with ``yield``, and an append reads neither the client's address nor the
        scheme that ``ProxyHeadersMiddleware`` would rewrite."""
        cors_send = self._with_cors(scope, send)
        request = Request(scope, receive, cors_send)
        try:
            response = await route.handler(request)
        except Exception as exc:
            handler = self._handler_of(exc)
            if handler is None:
                await self._unexpected(request, exc, send)
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, cors_send)

    def _handler_of(self, exc: Exception) -> Callable[[Request, Any], Any] | None:
        """The handler Starlette's ``ExceptionMiddleware`` would choose for ``exc``: by status
        for an ``HTTPException``, else by the nearest class in its MRO; None for what only the
        app's ``Exception`` handler takes (``ServerErrorMiddleware``'s)."""
        handlers = self.exception_handlers
        if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
            return handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in handlers:
                return handlers[cls]
        return None

    @cached_property
    def _lean_routes(self) -> list[lean.LeanRoute]:
        """The app's lean routes (``lean.mount``), which come first in its route list."""
        return [r for r in self.router.routes if isinstance(r, lean.LeanRoute)]

    async def _sse(self, scope: Any, receive: Any, send: Any) -> None:
        response = await self._sse_response(scope, receive, send)
        await response(scope, receive, self._with_cors(scope, send))

    async def _sse_response(self, scope: Any, receive: Any, send: Any) -> Response:
        """The SSE endpoint's response (the request and what it parsed are not kept while it
        streams). An error it did not handle is answered and raised, as the stack would (outside
        the CORS middleware: that answer has no CORS headers)."""
        request = Request(scope, receive)
        try:
            return await sse.events_sse(request)
        except Exception as exc:
            await self._unexpected(request, exc, send)
            raise

    @staticmethod
    async def _unexpected(request: Request, exc: Exception, send: Any) -> None:
        """What ``ServerErrorMiddleware`` answers an error nothing handled: the app's handler of
        ``Exception`` (``errors.unexpected``), sent outside the CORS headers; the caller raises
        the error on for the server to log."""
        await (await errors.unexpected(request, exc))(request.scope, request.receive, send)

    def _with_cors(self, scope: Any, send: Any) -> Any:
        """``send`` adding what the CORS middleware adds to a response, if the app has it."""
        cors = self._cors
        if cors is None:
            return send
        return partial(cors.send, send=send, request_headers=Headers(scope=scope))

    @cached_property
    def _cors(self) -> CORSMiddleware | None:
        """The CORS middleware the app was given (``create_app``), for the responses that skip
        the stack: another instance of it, made with the same options."""
        for middleware in self.user_middleware:
            if middleware.cls is CORSMiddleware:
                return CORSMiddleware(self, *middleware.args, **middleware.kwargs)  # type: ignore[arg-type]
        return None


def create_app(settings: Settings, *, redis: Any = None) -> FastAPI:
    """One gateway pod. ``redis``: an already-built client (tests); default from settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(pod(app))
            except STARTUP_ERRORS as exc:
                app.state.startup_problem = str(exc) or type(exc).__name__
                raise
            yield

    @asynccontextmanager
    async def pod(app: FastAPI) -> AsyncIterator[None]:
        client = redis if redis is not None else connect(settings.redis)
        archive = (
            None
            if settings.archive_url is None
            else Archive(settings.archive_url, seconds=settings.archive_timeout)
        )
        event_log = EventLog(
            client,
            limits=settings.log_limits,
            wait_replicas=settings.append_wait_replicas,
            wait_timeout_ms=settings.append_wait_timeout_ms,
            archive=archive,
        )
        metrics = Metrics()
        fanout = Fanout(
            client,
            event_log,
            poll_interval=settings.poll_interval,
            checkpoint_interval=settings.checkpoint_interval,
            on_latency=lambda seconds, n: _observe_n(metrics.delivery_latency, seconds, n),
            max_queued_bytes=settings.max_queued_bytes,
        )
        metrics.observe_fanout(fanout)
        # First, before anything starts a task: a taken port fails the start with nothing to undo.
        metrics_server = MetricsServer(settings, metrics) if settings.metrics_port else None
        if metrics_server is not None:
            await metrics_server.start()  # raises if the port is taken: the pod does not start
        keys = KeyStore(client)
        limits = RateLimiter(
            client,
            appends=settings.rate_appends_per_second,
            subscribes=settings.rate_subscribes_per_second,
            connections=settings.max_connections_per_key,
            on_refused=lambda kind: metrics.rate_limited.labels(kind).inc(),
        )
        rt = Runtime(
            settings=settings,
            redis=client,
            log=event_log,
            stores=StoreAdmin(client, archive),
            metrics=metrics,
            auth=Authenticator(settings, keys, metrics),
            keys=keys,
            limits=limits,
            fanout=fanout,
            sessions=Sessions(
                settings.slow_consumer_timeout,
                keys,
                limits,
                token_grace=settings.token_expiry_grace,
                budget=fanout.budget,
                on_cut=metrics.budget_cuts.inc,
            ),
            webhooks=WebhookStore(client, event_log),
            watch=None if settings.embedded else RedisWatch(client),
        )
        app.state.runtime = rt
        metrics.observe_sse(rt.sse_stats)
        if not settings.embedded:
            await first_contact(client)
        await config_file.apply_config(client, settings.config, settings.webhook_targets)
        await fanout.start()
        rt.sessions.start()
        lifecycle = Lifecycle(client, event_log, archive, settings.lifecycle_options)
        metrics.observe_lifecycle(lifecycle)
        await lifecycle.start()
        if rt.watch is not None:
            metrics.observe_redis(rt.watch)
            await rt.watch.start()
        # The embedded dev mode's Redis lives in this process: so does its dispatcher.
        dispatcher = None
        dispatching: asyncio.Task[None] | None = None
        if settings.embedded and settings.embedded_dispatcher:
            dispatcher = Dispatcher(client, settings.dispatcher_options, archive=archive)
            dispatching = asyncio.get_running_loop().create_task(
                _dispatch(dispatcher), name="embedded dispatcher"
            )
        process.settle_gc()
        try:
            yield
        finally:
            if dispatcher is not None and dispatching is not None:
                await dispatcher.close()
                await dispatching
            await lifecycle.close()
            if rt.watch is not None:
                await rt.watch.close()
            await rt.sessions.close()
            rt.sse_heartbeats.close()
            await fanout.close()
            if archive is not None:
                await archive.close()
            if redis is None:
                await client.aclose()
            if metrics_server is not None:
                await metrics_server.stop()

    app = Gateway(
        title="deltagate",
        version=__version__,
        summary="A DeltaBase-compatible event store with live WebSocket streaming",
        lifespan=lifespan,
        redirect_slashes=False,  # a wrong path is a 404 in the contract's format, not a 307
        # FastAPI's OpenTelemetry hooks are off: the pod has its own Prometheus metrics, and
        # with them on FastAPI asks the environment whether they are configured on every
        # request (three os.environ lookups, seen in the append path's profile).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    errors.install(app)
    openapi.install(app)
    if settings.origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
        )
    # X-Forwarded-For/-Proto from a trusted proxy, as uvicorn would apply them (it is told not
    # to: ``server.server_config``). As uvicorn's outermost wrapper its frame stayed under every
    # WebSocket for the connection's whole life (320 bytes); here it serves the HTTP stack,
    # and the streaming endpoints, which read neither the client's address nor the scheme,
    # skip it. Trusted: ``FORWARDED_ALLOW_IPS``, by default 127.0.0.1, uvicorn's own default.
    app.add_middleware(
        ProxyHeadersMiddleware,
        trusted_hosts=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
    )
    for prefix in ("", "/api"):
        # Appends first, in the app's own route list (``lean.mount``): the router tries routes
        # in order, and an append is the most frequent request (no path of the others can be
        # an append's: nothing shadows anything).
        lean.mount(
            app,
            appends.router,
            prefix=prefix,
            include_in_schema=not prefix,
            responses=openapi.ERRORS,
        )
        for module in (stores, reads, ws_tokens, webhooks):
            app.include_router(
                module.router,
                prefix=prefix,
                include_in_schema=not prefix,
                responses=openapi.ERRORS,
            )
        app.router.routes.append(WebSocketRoute(prefix + endpoint.PATH, endpoint.events_ws))
        app.router.routes.append(Route(prefix + sse.PATH, sse.events_sse, methods=["GET"]))
    app.include_router(operations.router)
    if settings.metrics_port is None:
        app.include_router(operations.metrics_router)
    app.include_router(static_router)  # /client/deltagate.js and the /demo/ pages
    app.include_router(studio_router)  # /studio: the web UI
    return app
