"""The ceiling of an HTTP append in Python: a bare Starlette route running the append script.

    python bench/_append_ceiling.py PORT REDIS_URL

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``); run by
``bench/append.py`` beside a deltagate pod, under the same uvicorn settings (``_bare.serve``:
uvloop, httptools). ``POST /event-stores/{store}/streams/{stream}`` with ``{"events": [...]}``
parses the body once with orjson, builds each event's stored body and the announcement, runs
``broker/scripts/append.lua`` by EVALSHA with the keys and arguments ``EventLog.append`` passes
(expected version ``any``, no idempotency key, the store created on first use) and answers 201
with deltagate's append JSON. No validation, no auth, no metrics: what an append cannot do
without. Key names come from ``broker.keys``, the one place they are built; the benchmark reads
the log back afterwards, so a drift from the script's arguments fails the run.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib import resources

import orjson
import redis.asyncio as aioredis
from _bare import ready, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.keys import StoreKeys

SEPARATOR = b"\x1f"
"""Joins the fields of a live announcement (``broker.codec.SEPARATOR``)."""
REDIS = aioredis.Redis.from_url(sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379")
APPEND = REDIS.register_script(resources.files("broker").joinpath("scripts/append.lua").read_text())


async def append(request: Request) -> Response:
    store, stream = request.path_params["store"], request.path_params["stream"]
    events = orjson.loads(await request.body())["events"]
    k = StoreKeys(store)
    now = time.time()
    created = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    transaction = str(uuid.uuid4())
    ids = os.urandom(16 * len(events)).hex()
    args: list[object] = [
        "any", stream, created, str(uuid.uuid4()), k.channel, "PUBLISH", 0, transaction,
        int(now * 1000), b"", 0,
    ]  # fmt: skip
    announced: list[bytes] = []
    for i, event in enumerate(events):
        h = ids[32 * i : 32 * i + 32]
        body = orjson.dumps(
            {
                "streamId": stream,
                "eventId": f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}",
                "type": event["type"],
                "data": event.get("data"),
                "schemaVersion": 1,
                "transactionId": transaction,
                "createdAt": created,
            }
        )[1:]
        args += [event["type"], body]
        announced += [event["type"].encode(), body]
    args[9] = SEPARATOR.join(announced)
    args[10] = sum(len(b) for b in announced[1::2])
    script_keys = [
        k.meta, k.log, k.stream(stream), k.streams, k.stream_created, k.stream_updated, k.meta,
        k.times, k.offsets,
    ]  # fmt: skip
    reply = await APPEND(keys=script_keys, args=args)
    if reply[0] != b"ok":
        return Response(orjson.dumps({"error": str(reply)}), 500)
    first, last, version = int(reply[1]), int(reply[2]), int(reply[3])
    answer = {
        "success": True,
        "streamId": stream,
        "nextExpectedStreamVersion": version,
        "currentStreamVersion": version,
        "eventsWritten": last - first + 1,
        "globalPosition": last,
        "transactionId": transaction,
    }
    return Response(orjson.dumps(answer), 201, media_type="application/json")


app = Starlette(
    routes=[
        Route("/event-stores/{store}/streams/{stream}", append, methods=["POST"]),
        Route("/readyz", ready),
    ]
)

if __name__ == "__main__":
    serve(app)
