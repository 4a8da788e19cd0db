"""The queued broadcast: the fan-out's second Python reference (the first, the ceiling, is the
bare broadcast of ``bench/_bare.py``).

    python bench/_queued.py PORT

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``). A plain Starlette
app under uvicorn (uvloop, ``ws="websockets-sansio"``, httptools): no Redis, no filters, no
auth. It speaks just enough of deltagate's protocol for the same load generator to drive it:

- ``POST /event-stores/{store}/streams/{stream}`` with ``{"events": [...]}``: each event gets the
  fields deltagate's log adds (positions, ids, createdAt), is encoded once, kept in memory, and
  broadcast to every connection subscribed to the store as
  ``{"type":"event","subscriptionId":…,"event":…}`` (prefix per subscription + event JSON + ``}``).
- ``/event-stores/{store}/events/ws``: ``subscribe`` (any filter is treated as ``*``) from
  ``latest``, ``earliest`` or a number (replayed from memory, then ``caughtUp``), ``ping``.

Each connection has a non-blocking outgoing queue (bounded like deltagate's default outbox,
1,024 frames; a frame that does not fit is dropped and counted) and one writer task that sends
everything queued per wake-up: what a server that never awaits one client in a loop over many
pays on top of the bare broadcast. Served by ``_bare.serve`` (the same uvicorn settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict, deque

import orjson
from _bare import Positions, ready, requests, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

MAX_FRAMES = 1024
REPLAY_CHUNK = 1000


class Conn:
    __slots__ = ("frames", "ready", "room", "ws")

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.frames: deque[str] = deque()
        self.ready = asyncio.Event()
        self.room = asyncio.Event()

    def push(self, frame: str) -> None:
        if len(self.frames) >= MAX_FRAMES:
            STATS["dropped"] += 1
            return
        self.frames.append(frame)
        self.ready.set()

    def force(self, frame: str) -> None:
        self.frames.append(frame)
        self.ready.set()

    async def writer(self) -> None:
        send = self.ws.send
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            while True:
                await self.ready.wait()
                self.ready.clear()
                frames, self.frames = self.frames, deque()
                self.room.set()
                for frame in frames:
                    await send({"type": "websocket.send", "text": frame})


class Store(Positions):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        """Event JSON by globalPosition - 1."""
        self.live: dict[Conn, str] = {}
        """Live connections and their frame prefix."""


STORES: defaultdict[str, Store] = defaultdict(Store)
STATS = {"dropped": 0}


async def append(request: Request) -> Response:
    store = STORES[request.path_params["store"]]
    events = orjson.loads(await request.body())["events"]
    encoded, answer = store.append(request.path_params["stream"], events)
    for event in encoded:
        store.log.append(event)
        tail = event + "}"
        for conn, prefix in store.live.items():
            conn.push(prefix + tail)
    return Response(answer, 201, media_type="application/json")


async def stats(request: Request) -> Response:
    return Response(orjson.dumps(STATS), media_type="application/json")


async def replay(store: Store, conn: Conn, prefix: str, after: int) -> None:
    """Queue every event after ``after`` from memory at the writer's pace, then go live with
    no await between the last check and the registration (so nothing is missed)."""
    position = after
    for _ in range(len(store.log) // REPLAY_CHUNK + 10_000):  # bounded; appends may race
        if position >= len(store.log):
            break
        if len(conn.frames) >= REPLAY_CHUNK:
            conn.room.clear()
            await conn.room.wait()
            continue
        for encoded in store.log[position : position + REPLAY_CHUNK]:
            conn.force(prefix + encoded + "}")
        position = min(len(store.log), position + REPLAY_CHUNK)
    store.live[conn] = prefix
    marker = {"type": "caughtUp", "subscriptionId": prefix_id(prefix), "globalPosition": position}
    conn.force(orjson.dumps(marker).decode())


def prefix_id(prefix: str) -> str:
    return str(orjson.loads(prefix + "0}")["subscriptionId"])


_auto = itertools.count(1)


async def events_ws(ws: WebSocket) -> None:
    store = STORES[ws.path_params["store"]]
    await ws.accept()
    conn = Conn(ws)
    writer = asyncio.get_running_loop().create_task(conn.writer())
    try:
        async for request in requests(ws):
            action = request.get("action")
            if action == "ping":
                conn.force('{"type":"pong"}')
            elif action == "subscribe":
                sub_id = request.get("subscriptionId") or f"sub-{next(_auto)}"
                quoted = orjson.dumps(sub_id).decode()
                prefix = f'{{"type":"event","subscriptionId":{quoted},"event":'
                position = request.get("position", "latest")
                head = len(store.log)
                subscribed = {
                    "type": "subscribed",
                    "subscriptionId": sub_id,
                    "eventFilter": request.get("eventFilter"),
                    "streamId": None,
                    "position": head,
                }
                conn.force(orjson.dumps(subscribed).decode())
                if position == "latest" or position is None:
                    store.live[conn] = prefix
                else:
                    await replay(store, conn, prefix, 0 if position == "earliest" else position)
            else:
                error = {"type": "error", "error": "INVALID_MESSAGE", "message": "unsupported"}
                conn.force(orjson.dumps(error).decode())
    except WebSocketDisconnect:
        pass
    finally:
        store.live.pop(conn, None)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


app = Starlette(
    routes=[
        Route("/event-stores/{store}/streams/{stream}", append, methods=["POST"]),
        Route("/stats", stats),
        Route("/readyz", ready),
        WebSocketRoute("/event-stores/{store}/events/ws", events_ws),
    ]
)


if __name__ == "__main__":
    serve(app)
