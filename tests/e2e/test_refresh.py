"""``{"action": "refresh", "token"}`` on an open WebSocket (contract section 9), on a real pod
with auth: credentials replaced with every subscription kept, never widened, and a connection
whose token expires without a refresh closed with 4001 once the grace has passed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.harness import Pod, spawn_pods

pytestmark = pytest.mark.timeout(90)

ADMIN = "admin-secret-for-refresh-tests"
AUTH = {
    "DELTAGATE_AUTH": "enabled",
    "DELTAGATE_ADMIN_KEY": ADMIN,
    "DELTAGATE_TOKEN_SECRET": "token-secret-for-refresh-tests-0123456789",
    "DELTAGATE_TOKEN_EXPIRY_GRACE": "4",
    "DELTAGATE_RATE_SUBSCRIBES_PER_SECOND": "0",
}


@pytest.fixture
def pod(redis_url, pods) -> Pod:
    (p,) = spawn_pods(pods, redis_url, 1, **AUTH)
    for store in ("alpha", "beta"):
        r = httpx.post(p.url + "/event-stores", json={"name": store}, headers={"X-API-Key": ADMIN})
        assert r.status_code == 201, r.text
    return p


async def mint(pod: Pod, key: str, store: str = "alpha", **body: Any) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.post(
            f"{pod.url}/event-stores/{store}/ws-tokens", json=body, headers={"X-API-Key": key}
        )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def append(pod: Pod, kind: str, stream: str = "o-1") -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.post(
            f"{pod.url}/event-stores/alpha/streams/{stream}",
            json={"events": [{"type": kind, "data": {}}]},
            headers={"X-API-Key": ADMIN},
        )
    assert r.status_code == 201, r.text


async def next_of(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message["type"] == kind or message["type"] == "error":
            return message  # type: ignore[no-any-return]


async def test_refreshed_a_hundred_times_keeps_subscriptions_and_never_widens(pod, keys):
    _, secret = await keys.create("browser", ["read:events", "connect:websockets"])
    _, other_secret = await keys.create("other", ["read:events", "connect:websockets"])
    token = await mint(pod, secret, eventFilter="order.*", ttlSeconds=60)
    url = f"{pod.ws_url}/event-stores/alpha/events/ws?token={token}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"action": "subscribe", "eventFilter": "order.*"}))
        assert (await next_of(ws, "subscribed"))["type"] == "subscribed"
        got: list[int] = []
        for i in range(100):
            fresh = await mint(pod, secret, eventFilter="order.*", ttlSeconds=60)
            await ws.send(json.dumps({"action": "refresh", "token": fresh}))
            reply = await next_of(ws, "refreshed")
            assert reply["type"] == "refreshed", reply
            assert reply["expiresAt"].endswith("Z")
            if i % 10 == 0:
                await append(pod, "order.placed")
                got.append((await next_of(ws, "event"))["event"]["globalPosition"])
        assert got == list(range(1, 11))

        async def refused(new_token: str, code: str) -> None:
            await ws.send(json.dumps({"action": "refresh", "token": new_token}))
            reply = await next_of(ws, "refreshed")
            assert reply["type"] == "error" and reply["error"] == code, reply

        # Widening: no narrowing at all, another pattern, another store, another key, junk.
        await refused(await mint(pod, secret, ttlSeconds=60), "FORBIDDEN")
        await refused(await mint(pod, secret, eventFilter="*", ttlSeconds=60), "FORBIDDEN")
        await refused(await mint(pod, secret, eventFilter="user.*", ttlSeconds=60), "FORBIDDEN")
        await refused(await mint(pod, secret, "beta", eventFilter="order.*"), "FORBIDDEN")
        await refused(await mint(pod, other_secret, eventFilter="order.*"), "FORBIDDEN")
        await refused("not-a-token", "UNAUTHORIZED")
        # Narrower than a subscription the connection holds: refused too (it would stay).
        narrower = await mint(pod, secret, eventFilter="order.placed", ttlSeconds=60)
        await refused(narrower, "FORBIDDEN")
        # The old credentials still hold: nothing wider may be subscribed, events still flow.
        await ws.send(json.dumps({"action": "subscribe", "eventFilter": "user.*"}))
        assert (await next_of(ws, "subscribed"))["error"] == "FORBIDDEN"
        await append(pod, "user.created")
        await append(pod, "order.shipped")
        assert (await next_of(ws, "event"))["event"]["globalPosition"] == 12


async def test_an_expired_token_is_closed_after_the_grace_unless_refreshed(pod, keys):
    _, secret = await keys.create("browser", ["read:events", "connect:websockets"])
    base = f"{pod.ws_url}/event-stores/alpha/events/ws"
    # exp is whole seconds (the mint's second + ttl): these live 1 to 2 s, time enough to
    # connect and subscribe (a 1 s token could expire within milliseconds of its mint)
    short = await mint(pod, secret, ttlSeconds=2)
    refreshed_short = await mint(pod, secret, ttlSeconds=2)
    async with (
        websockets.connect(f"{base}?token={short}") as lapsing,
        websockets.connect(f"{base}?token={refreshed_short}") as kept,
    ):
        for ws in (lapsing, kept):
            await ws.send(json.dumps({"action": "subscribe", "eventFilter": "*"}))
            assert (await next_of(ws, "subscribed"))["type"] == "subscribed"
        await kept.send(
            json.dumps({"action": "refresh", "token": await mint(pod, secret, ttlSeconds=60)})
        )
        assert (await next_of(kept, "refreshed"))["type"] == "refreshed"
        await asyncio.sleep(2.5)  # the short token has expired: the grace (4 s) runs
        await lapsing.send(json.dumps({"action": "ping"}))
        assert (await next_of(lapsing, "pong"))["type"] == "pong"  # still open in the grace
        await asyncio.wait_for(lapsing.wait_closed(), 15)  # once the grace has passed
        assert lapsing.close_code == 4001
        assert "token expired" in (lapsing.close_reason or "")
        # The refreshed one lives on, and still receives.
        await append(pod, "order.placed")
        assert (await next_of(kept, "event"))["event"]["globalPosition"] == 1
