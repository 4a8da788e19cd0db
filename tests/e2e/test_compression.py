"""permessage-deflate (``DELTAGATE_WS_COMPRESSION=true``) takes its own path: events are queued
as text and the library frames and compresses them per connection, while uncompressed
connections of the same pod share prebuilt frames. Both get the same messages."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from tests.e2e.test_streaming import STORE, append
from tests.harness import spawn_pods


async def receive_events(ws: websockets.ClientConnection, count: int) -> list[dict]:
    events = []
    while len(events) < count:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == "event":
            events.append(message)
    return events


async def test_compressed_and_plain_connections_get_the_same_events(redis_url, pods):
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_WS_COMPRESSION="true")
    url = f"{pod.ws_url}/event-stores/{STORE}/events/ws"
    async with httpx.AsyncClient(timeout=10) as http:
        await append(http, pod, "s-1", [{"type": "a.b", "data": {"i": i}} for i in range(50)])
        async with (
            websockets.connect(url, compression="deflate") as packed,
            websockets.connect(url, compression=None) as plain,
        ):
            assert packed.protocol.extensions and not plain.protocol.extensions
            for ws in (packed, plain):
                await ws.send(
                    json.dumps({"action": "subscribe", "eventFilter": "*", "position": 0})
                )
            await append(http, pod, "s-2", [{"type": "c.d", "data": {"é": "ü"}}] * 20)
            got = [await receive_events(ws, 70) for ws in (packed, plain)]
    assert got[0] == got[1]
    positions = [m["event"]["globalPosition"] for m in got[0]]
    assert positions == list(range(1, 71))
    assert got[0][-1]["event"]["data"] == {"é": "ü"}
