"""An append whose reply is lost on the way back (connection reset after Redis ran the script)
must not be applied twice. A small TCP proxy between the broker's client and the private
redis-server drops one reply on purpose (like redis-py's own test_cwe_404.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import pytest

from broker import EventLog, NewEvent, RedisConfig, StoreAdmin, Unavailable, connect


class ReplyDroppingProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.drop_next_reply = False
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, replies=False)),
            asyncio.create_task(self._pump(up_reader, writer, replies=True)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
                self._writers.discard(w)
            self._tasks.difference_update(pumps)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        while data := await src.read(65536):
            if replies and self.drop_next_reply:
                self.drop_next_reply = False
                self.dropped += 1
                return  # the reply never arrives; both sides are closed
            dst.write(data)
            await dst.drain()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[ReplyDroppingProxy]:
    parsed = urlparse(redis_url)
    assert parsed.hostname is not None and parsed.port is not None
    p = ReplyDroppingProxy(parsed.hostname, parsed.port)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def test_a_lost_append_reply_is_not_applied_twice(proxy: ReplyDroppingProxy) -> None:
    """A client that silently retried the script after a lost reply would append twice (redis-py
    clients built with ``Redis(...)`` retry 3 times by default; ``connect`` must not)."""
    client = connect(RedisConfig(url=proxy.url, timeout=2.0))
    try:
        log = EventLog(client)
        await StoreAdmin(client).create("orders")
        await log.append("orders", "s", [NewEvent("t", {"n": 0})])  # the script is loaded

        proxy.drop_next_reply = True
        try:
            result = await log.append("orders", "s", [NewEvent("t", {"n": 1})])
        except Unavailable:
            result = None  # outcome unknown to the caller: fine, as long as it is not doubled
        assert proxy.dropped == 1

        events, version, _ = await log.read_stream("orders", "s")
        assert [e.global_position for e in events] == list(range(1, version + 1))
        assert version <= 2, f"the lost append was applied {version - 1} times"
        if result is not None:
            assert version == 2 and result.last_position == 2
    finally:
        await client.aclose()
