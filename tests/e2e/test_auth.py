"""Every way in that should be shut, on real pods with auth enabled.

Keys are created the way `deltagate keys create` does (broker.apikeys.KeyStore on the
deployment's Redis); requests and sockets go to real gateway processes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import jwt
import pytest
import websockets

from tests.harness import Pod, spawn_pods

ADMIN = "admin-secret-for-tests"
TOKEN_SECRET = "token-secret-for-tests-0123456789abcdef"
ORIGIN = "https://app.example"
AUTH = {
    "DELTAGATE_AUTH": "enabled",
    "DELTAGATE_ADMIN_KEY": ADMIN,
    "DELTAGATE_TOKEN_SECRET": TOKEN_SECRET,
    "DELTAGATE_ALLOWED_ORIGINS": ORIGIN,
    "DELTAGATE_AUTO_CREATE_STORES": "false",
    "DELTAGATE_RATE_SUBSCRIBES_PER_SECOND": "20",
    "DELTAGATE_MAX_CONNECTIONS_PER_KEY": "5",
    "DELTAGATE_TOKEN_EXPIRY_GRACE": "1",  # an expired token's connection closes 1 s later
}


@pytest.fixture
def pod(redis_url, pods) -> Pod:
    (p,) = spawn_pods(pods, redis_url, 1, **AUTH)
    for store in ("alpha", "beta"):
        r = httpx.post(p.url + "/event-stores", json={"name": store}, headers={"X-API-Key": ADMIN})
        assert r.status_code == 201, r.text
    return p


def post_event(pod: Pod, store: str, key: str | None, **headers: str) -> httpx.Response:
    h = {"X-API-Key": key} if key else {}
    h.update(headers)
    return httpx.post(
        f"{pod.url}/event-stores/{store}/streams/s-1",
        json={"events": [{"type": "a.b", "data": {}}]},
        headers=h,
    )


def head(pod: Pod, store: str) -> int:
    r = httpx.get(f"{pod.url}/event-stores/{store}", headers={"X-API-Key": ADMIN})
    return int(r.json()["statistics"]["headPosition"])


async def close_code(url: str, **kwargs: Any) -> int | None:
    """Connect and wait for the server to close; the close code (None if it stayed open)."""
    async with websockets.connect(url, **kwargs) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 3)
        except websockets.ConnectionClosed:
            return ws.close_code
        except TimeoutError:
            return None
    return ws.close_code


async def test_rest_refuses_every_bad_credential(pod, keys):
    reader, reader_secret = await keys.create("reader", ["read:events"])
    writer_a, writer_a_secret = await keys.create("writer-a", ["write:events"], ["alpha"])
    _, short_secret = await keys.create("short", ["*"], ttl_seconds=1)
    revoked, revoked_secret = await keys.create("gone", ["*"])
    await keys.revoke(revoked.id)
    await asyncio.sleep(1.1)  # the short key expires
    cases = [
        (None, 401),
        ("not-a-key", 401),
        ("dg_" + "x" * 43, 401),
        (revoked_secret, 401),
        (short_secret, 401),
        (reader_secret, 403),
        (writer_a_secret, 201),
    ]
    for secret, status in cases:
        r = post_event(pod, "alpha", secret)
        assert r.status_code == status, (secret, r.text)
        assert r.json()["error"] if status >= 400 else r.json()["success"]
    assert post_event(pod, "beta", writer_a_secret).status_code == 403
    assert head(pod, "alpha") == 1 and head(pod, "beta") == 0
    # The three ways to present a key.
    base = f"{pod.url}/event-stores/alpha/streams/s-1"
    assert httpx.get(base, headers={"Authorization": f"Bearer {reader_secret}"}).status_code == 200
    assert httpx.get(base + f"?apiKey={reader_secret}").status_code == 200
    assert httpx.get(base, headers={"X-API-Key": reader_secret}).status_code == 200
    # A key limited to alpha does not even see beta in listings.
    listed = httpx.get(pod.url + "/event-stores", headers={"X-API-Key": writer_a_secret})
    assert listed.status_code == 403  # no read permission
    assert reader.id and writer_a.id
    # Public routes stay public.
    assert httpx.get(pod.url + "/healthz").status_code == 200
    assert httpx.get(pod.url + "/openapi.json").status_code == 200


async def test_revoked_key_closes_open_sockets_within_two_seconds(pod, keys):
    key, secret = await keys.create("ws", ["read:events", "connect:websockets"])
    url = f"{pod.ws_url}/event-stores/alpha/events/ws?apiKey={secret}"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"action": "subscribe", "eventFilter": "*"}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        await keys.revoke(key.id)
        started = time.monotonic()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4001
        assert time.monotonic() - started < 2.5
    # REST refuses it too within the contract's 2 s.
    while post_event(pod, "alpha", secret).status_code != 401:
        assert time.monotonic() - started < 2.0, "revoked key still accepted after 2 s"
        await asyncio.sleep(0.05)


async def test_websocket_credentials_and_store_scoping(pod, keys):
    _, no_connect = await keys.create("no-connect", ["read:events"])
    _, only_beta = await keys.create("beta", ["read:events", "connect:websockets"], ["beta"])
    base = f"{pod.ws_url}/event-stores/alpha/events/ws"
    assert await close_code(base) == 4001
    assert await close_code(base + "?apiKey=wrong") == 4001
    assert await close_code(base + f"?apiKey={no_connect}") == 4003
    assert await close_code(base + f"?apiKey={only_beta}") == 4003
    assert await close_code(f"{pod.ws_url}/event-stores/nope/events/ws?apiKey={ADMIN}") == 4004
    # A foreign Origin is refused (cross-site WebSocket hijacking); ours is welcome.
    assert (
        await close_code(
            base + f"?apiKey={ADMIN}", additional_headers={"Origin": "https://evil.example"}
        )
        == 4003
    )
    assert (
        await close_code(base + f"?apiKey={ADMIN}", additional_headers={"Origin": ORIGIN}) is None
    )


def mint(pod: Pod, store: str, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{pod.url}/event-stores/{store}/ws-tokens", json=body, headers={"X-API-Key": key}
    )


async def test_tokens(pod, keys):
    key, secret = await keys.create("browser", ["read:events", "connect:websockets"])
    r = mint(pod, "alpha", secret, ttlSeconds=60, eventFilter=["order.*"], streamId="o-1")
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert r.json()["expiresAt"].endswith("Z")
    assert mint(pod, "alpha", secret, ttlSeconds=7200).status_code == 400
    _, reader = await keys.create("reader-only", ["read:events"])
    assert mint(pod, "alpha", reader).status_code == 403

    base = f"{pod.ws_url}/event-stores/alpha/events/ws"
    async with websockets.connect(f"{base}?token={token}") as ws:
        await ws.send(
            json.dumps({"action": "subscribe", "eventFilter": "order.placed", "streamId": "o-1"})
        )
        assert json.loads(await ws.recv())["type"] == "subscribed"
        for outside in (
            {"eventFilter": "*", "streamId": "o-1"},
            {"eventFilter": "order.placed"},
            {"eventFilter": "user.*", "streamId": "o-1"},
        ):
            await ws.send(json.dumps({"action": "subscribe", **outside}))
            reply = json.loads(await ws.recv())
            assert reply["type"] == "error" and reply["error"] == "FORBIDDEN", outside
    # authToken works too; a token for alpha is refused on beta.
    assert await close_code(f"{base}?authToken={token}") is None
    assert await close_code(f"{pod.ws_url}/event-stores/beta/events/ws?token={token}") == 4003
    # Tampered, foreign-signed, expired: all refused at connect.
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    foreign = jwt.encode(
        {"sub": key.id, "aud": "deltagate-ws", "store": "alpha", "exp": int(time.time()) + 60},
        "another-secret-another-secret-another",
        algorithm="HS256",
    )
    expired = jwt.encode(
        {"sub": key.id, "aud": "deltagate-ws", "store": "alpha", "exp": int(time.time()) - 5},
        TOKEN_SECRET,
        algorithm="HS256",
    )
    for bad in (tampered, foreign, expired, "garbage"):
        assert await close_code(f"{base}?token={bad}") == 4001, bad
    # A connection outliving its token is closed with 4001 and a reason to act on.
    minted = mint(pod, "alpha", secret, ttlSeconds=1)
    assert minted.status_code == 201, minted.text
    short = minted.json()["token"]
    async with websockets.connect(f"{base}?token={short}") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4001
        assert "token expired" in (ws.close_reason or "")
    # Revoking the key that minted a token invalidates the token.
    await keys.revoke(key.id)
    await asyncio.sleep(1.2)
    assert await close_code(f"{base}?token={token}") == 4001


async def test_floods_are_throttled_per_key(pod, keys):
    _, flooder = await keys.create("flooder", ["read:events", "connect:websockets"])
    _, polite = await keys.create("polite", ["read:events", "connect:websockets"])
    base = f"{pod.ws_url}/event-stores/alpha/events/ws?apiKey="
    limit = int(AUTH["DELTAGATE_RATE_SUBSCRIBES_PER_SECOND"])
    async with websockets.connect(base + flooder) as ws:
        # Subscribe/unsubscribe churn from earliest (each subscribe costs the pod a replay),
        # well inside the 100 subscriptions a connection may hold at once.
        pairs = 1_000
        started = time.monotonic()
        for i in range(pairs):
            await ws.send(
                json.dumps(
                    {
                        "action": "subscribe",
                        "eventFilter": "*",
                        "position": "earliest",
                        "subscriptionId": f"s{i}",
                    }
                )
            )
            await ws.send(json.dumps({"action": "unsubscribe", "subscriptionId": f"s{i}"}))
        await ws.send(json.dumps({"action": "ping"}))
        rate_limited: set[str] = set()
        subscribed = 0
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if reply["type"] == "pong":
                break
            if reply["type"] == "subscribed":
                subscribed += 1
            elif reply["type"] == "error" and reply["error"] == "RATE_LIMIT_EXCEEDED":
                rate_limited.add(reply["subscriptionId"])
        elapsed = time.monotonic() - started
        assert subscribed + len(rate_limited) == pairs
        assert rate_limited
        # Fixed one-second windows: a run of `elapsed` seconds touches at most this many.
        assert subscribed <= limit * (int(elapsed) + 2)
        # The socket stays usable: once the window has passed, subscribing works again.
        await asyncio.sleep(1.1)
        await ws.send(
            json.dumps({"action": "subscribe", "eventFilter": "*", "subscriptionId": "x"})
        )
        while (reply := json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] != "subscribed":
            assert reply["type"] != "error", reply
        # Another key is served normally meanwhile.
        async with websockets.connect(base + polite) as other:
            await other.send(json.dumps({"action": "subscribe", "eventFilter": "*"}))
            assert json.loads(await asyncio.wait_for(other.recv(), 5))["type"] == "subscribed"
    # Connections per key: the quota is 5.
    opened = [await websockets.connect(base + flooder) for _ in range(5)]
    try:
        assert await close_code(base + flooder) == 1013
        assert await close_code(base + polite) is None
    finally:
        for ws in opened:
            await ws.close()


async def test_secrets_never_reach_logs_or_metrics(pod, keys):
    _, secret = await keys.create("quiet", ["*"])
    token = mint(pod, "alpha", secret).json()["token"]
    post_event(pod, "alpha", secret)
    httpx.get(f"{pod.url}/event-stores/alpha/events?apiKey={secret}")
    for query in (f"apiKey={secret}", f"token={token}", "apiKey=dg_wrongwrongwrongwrongwrong"):
        async with websockets.connect(f"{pod.ws_url}/event-stores/alpha/events/ws?{query}"):
            pass
    await asyncio.sleep(0.3)
    metrics = httpx.get(pod.url + "/metrics").text
    logs = pod.log()
    for secret_text in (secret, token, ADMIN, "dg_wrongwrongwrongwrongwrong"):
        assert secret_text not in logs
        assert secret_text not in metrics
    assert "deltagate_auth_failures_total" in metrics
