"""The batching WebSocket protocol (gateway/wsproto.py) under a real uvicorn server, against the
websockets library's client: what it writes is what a standard client reads, message by message,
with and without permessage-deflate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import inprocess
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.protocols.utils import ClientDisconnected
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from gateway.ws.batching import (
    EXTENSION,
    BatchingWebSocketProtocol,
    _pings,
    event_frame,
    text_frame,
    text_frame_header,
)
from tests.harness import free_port

# Around each boundary of the three header forms (7-bit, 16-bit and 64-bit lengths), in
# characters of 1, 2 and 3 UTF-8 bytes.
TEXTS = [
    "",
    "a" * 125,
    "a" * 126,
    "é" * 63,  # 126 bytes
    "a" * 65535,
    "a" * 65536,
    "€" * 30_000,  # 90,000 bytes
    '{"type":"event","subscriptionId":"s","event":{"data":{"name":"Zoë 🎉"}}}',
]


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 1 << 20])
def test_the_header_parses_back_as_one_text_frame(length: int) -> None:
    payload = b"x" * length
    # The websockets library's frame parser, as a client uses it (server frames are unmasked).
    reader = StreamReader()
    reader.feed_data(text_frame_header(length) + payload + b"rest")
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as parsed:
        next(parser)
    frame = parsed.value.value
    assert frame.fin and frame.opcode is Opcode.TEXT and frame.data == payload
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert reader.buffer == b"rest"  # the header said exactly how long the payload is


Handler = Callable[[WebSocket], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, *, deflate: bool, **config: Any) -> AsyncIterator[str]:
    app = Starlette(routes=[WebSocketRoute("/ws", handler)])
    port = free_port()
    config = uvicorn.Config(
        app,
        port=port,
        ws=BatchingWebSocketProtocol,
        ws_per_message_deflate=deflate,
        log_config=None,
        lifespan="off",
        **config,
    )
    async with inprocess.serving(config):
        yield f"ws://127.0.0.1:{port}/ws"


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "permessage-deflate"])
async def test_a_batch_arrives_as_separate_messages_in_order(deflate: bool) -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        send_texts = ws.scope["extensions"][EXTENSION].send_texts
        await send_texts(TEXTS)
        await send_texts(["after"])
        await ws.send_text("through ASGI")  # the ordinary path still works alongside
        await ws.receive()

    async with serving(handler, deflate=deflate) as url:
        async with connect(url, compression="deflate" if deflate else None, max_size=None) as c:
            assert bool(c.protocol.extensions) is deflate
            got = [await asyncio.wait_for(c.recv(), 5) for _ in range(len(TEXTS) + 2)]
    assert got == [*TEXTS, "after", "through ASGI"]


async def test_the_same_frame_bytes_reach_every_raw_connection() -> None:
    # Frame once, write bytes: one bytes object per message, written as is to two connections.
    frames = [text_frame(t) for t in TEXTS] + [event_frame('{"x":', '{"globalPosition":1}')]
    raw: list[bool] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        ext = ws.scope["extensions"][EXTENSION]
        raw.append(ext.raw)
        assert ext.write_frames(frames[:1]) and ext.write_frames(frames[1:])
        await ws.receive()

    async with serving(handler, deflate=False) as url:
        async with connect(url, compression=None, max_size=None) as a:
            async with connect(url, compression=None, max_size=None) as b:
                for c in (a, b):
                    got = [await asyncio.wait_for(c.recv(), 5) for _ in range(len(frames))]
                    assert got == [*TEXTS, '{"x":{"globalPosition":1}}']
    assert raw == [True, True]


async def test_a_compressed_connection_is_not_raw() -> None:
    raw: list[bool] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        raw.append(ws.scope["extensions"][EXTENSION].raw)
        await ws.receive()

    async with serving(handler, deflate=True) as url:
        async with connect(url, compression="deflate") as c:
            await c.ping()
    assert raw == [False]


async def test_sending_after_the_client_closed_raises_client_disconnected() -> None:
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        send_texts = ws.scope["extensions"][EXTENSION].send_texts
        await ws.receive()  # the client's close
        try:
            await send_texts(["too late"])
        except ClientDisconnected as exc:
            outcome.set_result(exc)
        else:
            outcome.set_result(None)

    async with serving(handler, deflate=False) as url:
        async with connect(url, compression=None) as c:
            await c.close()
        assert isinstance(await asyncio.wait_for(outcome, 5), OSError)


async def test_a_refused_handshake_offers_nothing() -> None:
    # An upgrade request without a key is refused before any scope exists; the server goes on.
    async with serving(lambda ws: ws.close(), deflate=False) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    assert status.startswith(b"HTTP/1.1 4")


PING = 0.2
"""Seconds between keep-alive pings in the tests below (uvicorn's ``ws_ping_interval``)."""


async def test_keepalive_pings_go_from_the_wheel_and_are_answered() -> None:
    # A client that answers (the library does) stays open over several intervals; its pings
    # came from the loop's wheel, not from a timer handle of its own; leaving empties the wheel.
    protocols: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        protocols.append(ws.scope["extensions"][EXTENSION])
        await ws.receive()

    async with serving(handler, deflate=False, ws_ping_interval=PING, ws_ping_timeout=5) as url:
        async with connect(url, compression=None, ping_interval=None) as client:
            await asyncio.sleep(PING * 4)
            (protocol,) = protocols
            assert protocol.ping_slot is not None and protocol.ping_timer is None
            assert protocol.last_ping_rtt > 0  # a pong answered one of our pings
            assert client.state.name == "OPEN"
            wheel = _pings(PING)
            assert wheel._handle is not None
        for _ in range(100):
            if protocol.ping_slot is None:
                break
            await asyncio.sleep(0.02)
        assert protocol.ping_slot is None
        assert wheel._handle is None  # the last connection left: no timer


async def test_a_client_that_never_answers_a_ping_is_closed() -> None:
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive()

    async with serving(handler, deflate=False, ws_ping_interval=PING, ws_ping_timeout=PING) as url:
        port = int(url.split(":")[2].split("/")[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        # Read (so the server's writes go through) but never answer: a ping, then the close.
        received = await asyncio.wait_for(reader.read(), 5)  # to the end: the server closed
        writer.close()
    assert received[:1] == b"\x89"  # the ping frame (FIN + opcode 9) came first
    close = received.index(b"\x88")  # then a close frame (opcode 8, unmasked)...
    assert int.from_bytes(received[close + 2 : close + 4], "big") == 1011  # keepalive timeout


async def test_a_reader_working_through_a_backlog_is_not_taken_for_dead() -> None:
    """A client reading a long backlog at its own pace gets the server's ping only after what
    was queued before it, long after the pong deadline: while it keeps reading, the deadline
    starts again, and every message arrives on the open connection (uvicorn alone cut it,
    mid-replay, as if it were dead)."""
    frame = text_frame("x" * 16_384)
    count = 600  # ~10 MB: more than the kernel's buffers on both sides hold
    protocols: list[Any] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        protocol = ws.scope["extensions"][EXTENSION]
        protocols.append(protocol)
        for _ in range(count):
            while not protocol.write_frames([frame]):
                if protocol.disconnected or protocol.close_sent:
                    return
                await protocol.writable.wait()
        await ws.send_text("done")
        await ws.receive()

    # A longer deadline than the other tests': this one must tell a reader from a dead peer, and
    # a test process starved of the CPU for 0.2 s (a busy CI host) reads nothing for that long.
    ping = 0.5
    async with serving(handler, deflate=False, ws_ping_interval=ping, ws_ping_timeout=ping) as url:
        async with connect(url, compression=None, ping_interval=None, max_size=None) as client:
            got = 0
            started = asyncio.get_running_loop().time()
            while await asyncio.wait_for(client.recv(), 10) != "done":
                got += 1
                if got % 10 == 0:
                    await asyncio.sleep(0.06)  # ~150 messages/s: about 4 s behind at the end
            took = asyncio.get_running_loop().time() - started
            assert got == count
            assert took > 5 * ping  # reading lasted many pong deadlines, and it stayed open:
            assert client.state.name == "OPEN"


async def test_every_message_arrives_in_order_whether_the_app_waits_or_is_busy() -> None:
    """uvicorn reads one message at a time: it pauses reading after each and resumes once the
    app has taken every one. ``receive`` hands out a future: when the app already waits for it
    (reading resumes once the message is handed over) and when messages queued while it was
    busy (once it took the last)."""
    got: list[str] = []
    waits: list[bool] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        while True:
            taken = ws._receive()  # what the server hands the app: a future, not a coroutine
            waits.append(isinstance(taken, asyncio.Future) and not asyncio.iscoroutine(taken))
            message = await taken
            if message["type"] == "websocket.disconnect":
                return
            got.append(message["text"])
            if message["text"].startswith("slow"):
                await asyncio.sleep(0.2)  # busy: the next ones queue meanwhile
            if message["text"] == "done":
                await ws.send_text(str(len(got)))

    async with serving(handler, deflate=False) as url:
        async with connect(url, compression=None) as c:
            sent = []
            for i in range(30):
                sent.append(f"m{i}")
                await c.send(sent[-1])
                if i % 10 == 0:
                    await asyncio.sleep(0.05)  # the app waits for the next one
            sent.append("slow")
            await c.send("slow")
            for i in range(40):  # queued while the app sleeps
                sent.append(f"q{i}")
                await c.send(sent[-1])
            sent.append("done")
            await c.send("done")
            assert await asyncio.wait_for(c.recv(), 10) == str(len(sent))
    assert got == sent
    assert waits and all(waits)


async def test_a_waiting_connection_holds_no_frame_for_receive() -> None:
    """An idle connection's app waits on the server's ``receive`` future itself: no coroutine
    of the protocol's (nor of the inbox's) sits between them."""
    chains: list[list[str]] = []

    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws._receive()  # (the events endpoint awaits the server's receive like this)

    async with serving(handler, deflate=False) as url:
        async with connect(url, compression=None):
            await asyncio.sleep(0.2)
            for task in asyncio.all_tasks():
                chain = inprocess.awaiting_chain(task)
                if "test_a_waiting_connection_holds_no_frame_for_receive.<locals>.handler" in chain:
                    chains.append(chain)
    assert len(chains) == 1, chains
    *_, awaiting, awaited = chains[0]
    assert awaiting == "test_a_waiting_connection_holds_no_frame_for_receive.<locals>.handler"
    assert awaited in ("Future", "FutureIter"), chains  # (the C future's __await__)
