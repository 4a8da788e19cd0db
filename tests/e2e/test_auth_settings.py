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


async def test_auto_create_needs_write_or_manage_permission(redis_url, pods):
    """With DELTAGATE_AUTO_CREATE_STORES on, a read-only key once created a store just by
    connecting: creating a store takes write or manage permission; others get 4004 / 404."""
    (pod,) = spawn_pods(
        pods, redis_url, 1, DELTAGATE_AUTH="enabled", DELTAGATE_ADMIN_KEY=ADMIN
    )  # spawn_pods turns auto-create on
    import redis.asyncio as aioredis

    from broker.apikeys import KeyStore

    client = aioredis.from_url(redis_url, decode_responses=True)
    keys = KeyStore(client)
    _, reader = await keys.create("reader", ["read:events", "connect:websockets"])
    _, writer = await keys.create("writer", ["read:events", "write:events", "connect:websockets"])
    _, manager = await keys.create(
        "manager", ["read:events", "connect:websockets", "manage:event_stores"]
    )
    await client.aclose()

    async def connect_close_code(store: str, key: str) -> int | None:
        url = f"{pod.ws_url}/event-stores/{store}/events/ws"
        async with websockets.connect(url, additional_headers={"X-API-Key": key}) as ws:
            try:
                await ws.send(json.dumps({"action": "ping"}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"
                return None
            except websockets.ConnectionClosed:
                return ws.close_code

    async with httpx.AsyncClient(headers={"X-API-Key": ADMIN}) as admin:

        async def exists(store: str) -> bool:
            return (await admin.get(f"{pod.url}/event-stores/{store}")).status_code == 200

        assert await connect_close_code("made-by-reader", reader) == 4004
        assert not await exists("made-by-reader")
        read = await admin.get(
            f"{pod.url}/event-stores/made-by-read/streams/s", headers={"X-API-Key": reader}
        )
        assert read.status_code == 404 and read.json()["error"] == "EVENT_STORE_NOT_FOUND"
        assert not await exists("made-by-read")

        assert await connect_close_code("made-by-writer", writer) is None
        assert await exists("made-by-writer")
        assert await connect_close_code("made-by-manager", manager) is None
        assert await exists("made-by-manager")
        appended = await admin.post(
            f"{pod.url}/event-stores/made-by-append/streams/s",
            json={"events": [{"type": "a", "data": {}}]},
            headers={"X-API-Key": writer},
        )
        assert appended.status_code == 201 and await exists("made-by-append")
        # A store a read-only key may use once it exists.
        assert await connect_close_code("made-by-writer", reader) is None


def test_auth_disabled_on_a_shared_redis_is_said_at_start(redis_url, pods):
    """DELTAGATE_AUTH=disabled beside a Redis URL started a wide-open pod without a word; it
    now warns once at start (a pod with auth on does not)."""
    open_pod, guarded = (
        spawn_pods(
            pods, redis_url, 1, DELTAGATE_AUTH=auth, DELTAGATE_ADMIN_KEY=ADMIN, DELTAGATE_PROT="1"
        )[0]
        for auth in ("disabled", "enabled")
    )
    # (and a misspelt setting is named, with the one it resembles)
    assert "DELTAGATE_PROT (did you mean DELTAGATE_PORT?)" in guarded.log()
    assert httpx.get(open_pod.url + "/event-stores").status_code == 200  # open indeed
    assert "auth is disabled (DELTAGATE_AUTH=disabled) on a deployment with Redis" in (
        open_pod.log()
    )
    assert "auth is disabled" not in guarded.log()
