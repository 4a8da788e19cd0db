"""The fan-out ceiling: a bare Starlette broadcast, the least a Python ASGI server can do per
delivery.

    python bench/_bare.py PORT

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``). Starlette under
uvicorn with uvloop, httptools and ``ws="websockets-sansio"`` (deltagate's settings), no Redis,
no filters, no auth, no queue and no task per connection: the POST route builds each event's
frame once and awaits ``websocket.send`` of it on every subscribed socket, one after the other.
That is the FastAPI docs' ``ConnectionManager`` broadcast: one slow socket would stall everyone
(uvicorn's send waits while a transport is paused), which the benchmark's readers never are, so
it is the floor of CPU per delivery on deltagate's stack, not a design to copy.

It speaks just enough of deltagate's protocol for the same load generator to drive it:

- ``POST /event-stores/{store}/streams/{stream}`` with ``{"events": [...]}``: each event gets
  the fields deltagate's log adds (positions, ids, createdAt) and is sent as
  ``{"type":"event","subscriptionId":"sub-1","event":…}`` to every socket subscribed to the
  store; the answer is deltagate's append JSON.
- ``/event-stores/{store}/events/ws``: ``subscribe`` from ``latest`` (any filter is taken as
  ``*``; other positions are refused: nothing is stored), ``ping``.

``bench/_queued.py`` is the second reference: the same with a bounded queue and a writer task
per connection, and replay from memory.
"""

from __future__ import annotations

import resource
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.process import settle_gc

PREFIX = '{"type":"event","subscriptionId":"sub-1","event":'


class Positions:
    """A store's head and stream versions: where an append puts its events (``_queued`` too)."""

    def __init__(self) -> None:
        self.head = 0
        self.versions: dict[str, int] = {}

    def append(self, stream: str, events: list[dict[str, Any]]) -> tuple[list[str], bytes]:
        """Each event's JSON as deltagate's log serves it (positions, ids, createdAt), encoded
        once; and the append's answer, deltagate's append JSON."""
        transaction = str(uuid.uuid4())
        created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        version = self.versions.get(stream, 0)
        encoded = []
        for event in events:
            version += 1
            self.head += 1
            fields = {
                "globalPosition": self.head,
                "streamPosition": version,
                "streamId": stream,
                "eventId": str(uuid.uuid4()),
                "type": event["type"],
                "data": event.get("data"),
                "schemaVersion": 1,
                "transactionId": transaction,
                "createdAt": created,
            }
            encoded.append(orjson.dumps(fields).decode())
        self.versions[stream] = version
        answer = {
            "success": True,
            "streamId": stream,
            "nextExpectedStreamVersion": version,
            "currentStreamVersion": version,
            "eventsWritten": len(events),
            "globalPosition": self.head,
            "transactionId": transaction,
        }
        return encoded, orjson.dumps(answer)


class Store(Positions):
    def __init__(self) -> None:
        super().__init__()
        self.sockets: set[WebSocket] = set()


STORES: defaultdict[str, Store] = defaultdict(Store)


async def append(request: Request) -> Response:
    store = STORES[request.path_params["store"]]
    events = orjson.loads(await request.body())["events"]
    encoded, answer = store.append(request.path_params["stream"], events)
    for event in encoded:
        message = {"type": "websocket.send", "text": PREFIX + event + "}"}
        for ws in list(store.sockets):
            try:
                await ws.send(message)
            except (WebSocketDisconnect, OSError, RuntimeError):
                store.sockets.discard(ws)
    return Response(answer, 201, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b"ok")


async def requests(ws: WebSocket) -> AsyncIterator[dict[str, Any]]:
    """A client's messages, decoded, until it disconnects (``_queued`` too)."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        yield orjson.loads(message.get("text") or "{}")


async def events_ws(ws: WebSocket) -> None:
    store = STORES[ws.path_params["store"]]
    await ws.accept()
    try:
        async for request in requests(ws):
            action = request.get("action")
            if action == "ping":
                await ws.send_text('{"type":"pong"}')
            elif action == "subscribe" and request.get("position", "latest") == "latest":
                subscribed = {"type": "subscribed", "subscriptionId": "sub-1"}
                await ws.send_text(orjson.dumps(subscribed | {"position": store.head}).decode())
                store.sockets.add(ws)
            else:
                error = {"type": "error", "error": "INVALID_MESSAGE", "message": "unsupported"}
                await ws.send_text(orjson.dumps(error).decode())
    except WebSocketDisconnect:
        pass
    finally:
        store.sockets.discard(ws)


app = Starlette(
    routes=[
        Route("/event-stores/{store}/streams/{stream}", append, methods=["POST"]),
        Route("/readyz", ready),
        WebSocketRoute("/event-stores/{store}/events/ws", events_ws),
    ]
)


def serve(asgi: Starlette) -> None:
    """Serve ``asgi`` on ``sys.argv[1]`` under deltagate's uvicorn settings (``_queued`` and the
    append ceiling too), with Python's collector set as a pod sets it (``settle_gc``): with the
    defaults, the append ceiling spent ~11% more CPU per 100-event request than with the pod's
    setting, a handicap the pod did not carry."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    settle_gc()
    uvicorn.run(
        asgi,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    serve(app)
