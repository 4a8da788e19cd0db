"""A tiny TCP proxy the tests can retarget: clients keep one address (a page keeps its origin)
while the gateway pod behind it is killed and another takes over.

It runs its own event loop in a thread, so sync and async tests use it alike. When either side
of a connection closes, so does the other, as a load balancer's would when a pod dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from tests.harness import free_port


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        self._thread.start()
        self._call(self._start())
        return self

    def retarget(self, target_port: int, *, drop: bool = True) -> None:
        """Send new connections to ``target_port``; ``drop`` closes the open ones."""
        self.target_port = target_port
        if drop:
            self.drop()

    def drop(self) -> None:
        self._call(self._drop())

    def close(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop()
        # A closed transport's socket is closed in a callback of the loop: stopped at once, the
        # loop left the last connections' sockets open (a client reconnecting as the test ended),
        # and the garbage collector's ResourceWarning then failed whichever test ran next.
        await asyncio.sleep(0.1)

    async def _drop(self) -> None:
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        pipes: list[asyncio.Future[None]] = []
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    "127.0.0.1", self.target_port
                )
            except OSError:
                return  # the pod is down: the client sees its connection close at once
            pipes = [
                asyncio.ensure_future(self._pipe(reader, upstream_writer)),
                asyncio.ensure_future(self._pipe(upstream_reader, writer)),
            ]
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._connections.discard(task)
            for pipe in pipes:
                pipe.cancel()
            for pipe in pipes:
                with contextlib.suppress(asyncio.CancelledError):
                    await pipe
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
