"""uvicorn's server with deltagate's drain: the first SIGTERM (or SIGINT) turns readiness off,
refuses new WebSockets, closes the open ones with 1012 spread over the drain window (each after
what was queued for it), then lets uvicorn finish in-flight requests and exit 0. A second signal
exits at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Generator
from types import FrameType

import uvicorn

log = logging.getLogger("deltagate.server")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GatewayServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]], deadline: float
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._deadline = deadline
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        try:
            await super().serve(sockets)
        finally:
            if self._drain_task is not None:
                self._drain_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._drain_task

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self._loop is None:
            self.force_exit = self.should_exit  # a third signal forces
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        log.info("signal received: draining", extra={"signal": signal.Signals(sig).name})
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await asyncio.wait_for(self._drain(), self._deadline)
        except TimeoutError:
            log.warning("drain window exceeded; shutting down anyway")
        finally:
            self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Like uvicorn's, without re-raising the signal at the end: a drained pod exits 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
