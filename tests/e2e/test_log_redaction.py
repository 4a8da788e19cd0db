"""No credential reaches a real pod's log, however its query parameter is spelled: the probes of
issue 13 got the admin key and a JWT into the log with percent-encoded names."""

from __future__ import annotations

import asyncio

import httpx
import websockets

from tests.harness import spawn_pods

ADMIN = "admin-key-that-must-never-be-logged"
TOKEN_SECRET = "token-secret-for-redaction-tests-0123456789"


async def test_credentials_in_query_strings_never_reach_the_pod_log(redis_url, pods):
    (pod,) = spawn_pods(
        pods,
        redis_url,
        1,
        DELTAGATE_AUTH="enabled",
        DELTAGATE_ADMIN_KEY=ADMIN,
        DELTAGATE_TOKEN_SECRET=TOKEN_SECRET,
        DELTAGATE_LOG_LEVEL="debug",
    )
    created = httpx.post(
        pod.url + "/event-stores", json={"name": "logs"}, headers={"X-API-Key": ADMIN}
    )
    assert created.status_code == 201
    minted = httpx.post(
        pod.url + "/event-stores/logs/ws-tokens", json={}, headers={"X-API-Key": ADMIN}
    )
    token = minted.json()["token"]
    queries = [
        f"apiKey={ADMIN}",
        f"%61piKey={ADMIN}",
        f"api%4Bey={ADMIN}",
        f"token={token}",
        f"authToken={token}",
        f"%74oken={token}",
        f"token%3D{token}",  # not a credential to the server (no '='), but it is still a secret
        f"x=1%26apiKey%3D{ADMIN}",
    ]
    for query in queries:
        url = f"{pod.ws_url}/event-stores/logs/events/ws?{query}"
        try:
            async with websockets.connect(url) as ws:
                await ws.send('{"action": "ping"}')
                await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed:
            pass  # refused (no credential it understands): the upgrade was logged all the same
        async with httpx.AsyncClient() as http:
            await http.get(f"{pod.url}/event-stores/logs?{query}")
            await http.get(f"{pod.url}/no/such/path?{query}")
    log = pod.log_path.read_text()
    assert "WebSocket /event-stores/logs/events/ws?" in log, "the upgrades were logged"
    assert ADMIN not in log
    assert token not in log and token.split(".")[1] not in log
