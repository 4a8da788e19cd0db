"""Auth settings on real pods: token secret rotation, the append rate limit, CORS for the REST
API, and the bootstrap admin key from a mounted secret file (Kubernetes)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import httpx
import websockets

from tests.harness import spawn_pods

OLD = "old-token-secret-0123456789abcdef-old"
NEW = "new-token-secret-0123456789abcdef-new"
ADMIN = "admin-key-for-settings-tests"


def test_rotation_accepts_tokens_signed_with_any_listed_secret(redis_url, pods):
    before, after = (
        spawn_pods(
            pods,
            redis_url,
            1,
            DELTAGATE_AUTH="enabled",
            DELTAGATE_ADMIN_KEY=ADMIN,
            DELTAGATE_TOKEN_SECRET=secrets,
        )[0]
        for secrets in (OLD, f"{NEW},{OLD}")
    )
    httpx.post(before.url + "/event-stores", json={"name": "rot"}, headers={"X-API-Key": ADMIN})
    old_token = httpx.post(
        f"{before.url}/event-stores/rot/ws-tokens", json={}, headers={"X-API-Key": ADMIN}
    ).json()["token"]
    new_token = httpx.post(
        f"{after.url}/event-stores/rot/ws-tokens", json={}, headers={"X-API-Key": ADMIN}
    ).json()["token"]

    async def opens(pod, token: str) -> bool:
        url = f"{pod.ws_url}/event-stores/rot/events/ws?token={token}"
        try:
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"action": "ping"}))
                return json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"
        except websockets.ConnectionClosed:
            return False

    async def check() -> None:
        assert await opens(after, old_token)  # signed before the rotation: still valid
        assert await opens(after, new_token)
        assert not await opens(before, new_token)  # the old pod does not know the new secret

    asyncio.run(check())


def test_append_rate_limit_per_key_with_retry_after(redis_url, pods):
    (pod,) = spawn_pods(
        pods,
        redis_url,
        1,
        DELTAGATE_AUTH="enabled",
        DELTAGATE_ADMIN_KEY=ADMIN,
        DELTAGATE_RATE_APPENDS_PER_SECOND="5",
    )
    httpx.post(pod.url + "/event-stores", json={"name": "limited"}, headers={"X-API-Key": ADMIN})

    async def flood(key: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(headers={"X-API-Key": key}) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"{pod.url}/event-stores/limited/streams/s",
                        json={"events": [{"type": "a", "data": {}}]},
                    )
                    for _ in range(40)
                )
            )

    import redis.asyncio as aioredis

    from broker.apikeys import KeyStore

    async def make_key() -> str:
        client = aioredis.from_url(redis_url, decode_responses=True)
        _, secret = await KeyStore(client).create("writer", ["write:events", "read:events"])
        await client.aclose()
        return secret

    secret = asyncio.run(make_key())
    responses = asyncio.run(flood(secret))
    limited = [r for r in responses if r.status_code == 429]
    written = [r for r in responses if r.status_code == 201]
    assert limited and written and len(limited) + len(written) == 40
    assert all(
        r.json()["error"] == "RATE_LIMIT_EXCEEDED" and r.headers["Retry-After"] for r in limited
    )
    head = httpx.get(f"{pod.url}/event-stores/limited", headers={"X-API-Key": ADMIN}).json()
    assert head["statistics"]["totalEvents"] == len(written)  # refused appends wrote nothing


def test_cors_and_admin_key_from_a_mounted_file(redis_url, pods):
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "admin-key"
        key_file.write_text(ADMIN + "\n")
        (pod,) = spawn_pods(
            pods,
            redis_url,
            1,
            DELTAGATE_AUTH="enabled",
            DELTAGATE_ADMIN_KEY_FILE=str(key_file),
            DELTAGATE_ALLOWED_ORIGINS="https://app.example",
        )
        assert httpx.get(pod.url + "/event-stores", headers={"X-API-Key": ADMIN}).status_code == 200
        assert (
            httpx.get(pod.url + "/event-stores", headers={"X-API-Key": "nope"}).status_code == 401
        )
        preflight = httpx.options(
            pod.url + "/event-stores",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        foreign = httpx.options(
            pod.url + "/event-stores",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in foreign.headers
