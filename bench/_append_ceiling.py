"""The ceiling of an HTTP append in Python: a bare Starlette route running the append script.

    python bench/_append_ceiling.py PORT REDIS_URL

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``); run by
``bench/append.py`` beside a deltagate pod, under the same uvicorn settings (``_bare.serve``:
uvloop, httptools). ``POST /event-stores/{store}/streams/{stream}`` with ``{"events": [...]}``
parses the body once with orjson and hands the events straight to ``EventLog.append`` (expected
version ``any``, no idempotency key, the store created on first use): the same EVALSHA of
``broker/scripts/append.lua`` with the same keys and arguments as the pod's, because it is the
same code that builds them, whatever shape they take. It answers 201 with deltagate's append
JSON. No validation, no auth, no metrics, no response model: what an append over HTTP cannot do
without.
"""

from __future__ import annotations

import sys

import orjson
from _bare import ready, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker import EventLog, NewEvent, RedisConfig, codec, connect

LOG = EventLog(connect(RedisConfig(url=sys.argv[2] if len(sys.argv) > 2 else None)))


async def append(request: Request) -> Response:
    stream = request.path_params["stream"]
    events = [
        NewEvent(e["type"], e.get("data")) for e in orjson.loads(await request.body())["events"]
    ]
    result = await LOG.append(request.path_params["store"], stream, events, auto_create=True)
    version, written = result.stream_version, result.events_written
    answer = {
        "success": True,
        "streamId": result.stream_id,
        "nextExpectedStreamVersion": version,
        "currentStreamVersion": version,
        "eventsWritten": written,
        "eventsAppended": written,
        "createdNewStream": version == written,
        "globalPosition": result.last_position,
        "transactionId": result.transaction_id,
    }
    if result.events:  # the events themselves, joined as the pod joins them
        answer["events"] = orjson.Fragment(codec.events_array_of([result.events]))
    return Response(orjson.dumps(answer), 201, media_type="application/json")


app = Starlette(
    routes=[
        Route("/event-stores/{store}/streams/{stream}", append, methods=["POST"]),
        Route("/readyz", ready),
    ]
)

if __name__ == "__main__":
    serve(app)
