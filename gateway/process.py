"""The one way deltagate runs a long-lived process (a gateway pod, a webhook dispatcher): an HTTP
server (uvicorn) and, for the dispatcher, a main task, under one signal policy.

- The first SIGTERM or SIGINT starts a drain. A server that is the process' intake (no main
  task: a pod) closes its listening sockets at once, so a new connection is refused (even from a
  client that never asks ``/readyz``) while those already open go on; a dispatcher's server only
  answers probes and metrics, and keeps listening so that they see the drain through. Then
  ``drain()`` runs (a pod: readiness off, new WebSockets refused, open ones closed with 1012
  after what was queued for them; a dispatcher: in-flight deliveries finish, progress saved,
  leases released), at most ``drain_deadline`` seconds; then the server stops listening,
  finishes the requests in flight on the connections still open (uvicorn's graceful shutdown)
  and the process exits 0.
- A second signal stops at once.
- If the main task or the server ends on its own, that is a failure: the other is stopped and the
  process exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import uvicorn

from broker import cancel_and_wait

log = logging.getLogger("deltagate.process")
T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)

GC_GEN0_THRESHOLD = 50_000
"""Allocations between two collections of the young generation (Python's default: 700)."""


def settle_gc() -> None:
    """Once a long-lived process has started: what exists now lives as long as the process, so
    keep it out of every collection (``gc.freeze``), and collect the young generation less
    often. A pod holds many long-lived objects per connection, and each full pass over them
    shows up as a latency spike for everyone; each delivery, request or archived page makes
    short-lived objects by the thousand (the lifecycle's copy of 200,000 events spent about a
    third less CPU per event with this than with the defaults)."""
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


class Server(uvicorn.Server):
    """uvicorn's server without signal handlers of its own: ``serve`` below owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def stop_listening(server: uvicorn.Server) -> None:
    """Close ``server``'s listening sockets (none yet before it has started): new connections
    are refused from now on, the open ones are untouched. uvicorn's shutdown closes them again,
    which does nothing."""
    for listener in getattr(server, "servers", ()):
        listener.close()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on uvloop (installed with uvicorn[standard]) when available."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


START_FAILED = 3
"""The exit status of a process that could not start for a reason its operator can fix
(uvicorn's own for an app whose start failed, which a pod's is)."""


class DidNotStart(Exception):
    """The server's app failed to start (uvicorn said why in its log)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the server did not start (status {status})")
        self.status = status


async def _serve_http(server: Server) -> None:
    """``server.serve()``, whose ``SystemExit`` for an app that failed to start (uvicorn's way
    of ending its own command) becomes ``DidNotStart``: a task's SystemExit would leave the
    event loop at once, with a "never retrieved" traceback, before ``serve`` could stop."""
    try:
        await server.serve()
    except SystemExit as exc:
        raise DidNotStart(exc.code if isinstance(exc.code, int) and exc.code else 1) from None


async def serve(
    server: Server,
    *,
    name: str,
    drain: Callable[[], Awaitable[None]],
    drain_deadline: float,
    main: Coroutine[Any, Any, None] | None = None,
) -> int:
    """Run ``server`` (and ``main``) until a signal, then drain and stop. The exit status."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if signalled.is_set():
            log.warning("second signal: stopping now", extra={"component": name})
            server.force_exit = server.should_exit = True
            return
        log.info("signal received: draining", extra={"component": name, "signal": sig.name})
        if main is None:  # the server is the intake: refuse new connections now
            stop_listening(server)
        signalled.set()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    web = loop.create_task(_serve_http(server), name=f"{name} http")
    work = loop.create_task(main, name=name) if main is not None else None
    stop = loop.create_task(signalled.wait(), name=f"{name} signals")
    status = 0
    try:
        running = {web, stop} if work is None else {web, stop, work}
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        if stop.done():
            try:
                await asyncio.wait_for(drain(), drain_deadline)
            except TimeoutError:
                log.warning("drain deadline passed; stopping anyway", extra={"component": name})
        else:
            status = 1
            ended = work if work is not None and work.done() else web
            exc = None if ended.cancelled() else ended.exception()
            if isinstance(exc, DidNotStart):
                log.error("the server did not start; stopping", extra={"component": name})
                status = exc.status
            else:
                log.error(f"{ended.get_name()} ended on its own; stopping", exc_info=exc)
            if work is not None and not work.done():
                # The main task runs on without the server (a dispatcher whose status port is
                # taken): it is asked to stop as a signal would, rather than waited for until
                # the deadline, which it would never meet by itself.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(drain(), drain_deadline)
        server.should_exit = True
        if work is not None and not work.done():
            await asyncio.wait({work}, timeout=drain_deadline)
        await asyncio.wait({web})
        if work is not None and work.done() and not work.cancelled() and work.exception():
            log.error("main task failed", exc_info=work.exception(), extra={"component": name})
            status = 1
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        await cancel_and_wait([t for t in (stop, web, work) if t is not None])
    return status
