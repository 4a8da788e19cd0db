"""What an idle subscriber holds in a pod as ``deltagate serve`` runs it (in-process, uvicorn, the
batching protocol, real Redis): while it waits for the client's next message its task's chain of
coroutines is uvicorn's ``run_asgi`` awaiting the events endpoint awaiting the server's future,
and nothing between them (each layer a frame for the connection's whole life: the app's
``__call__``, Starlette's ``WebSocket.receive``, the protocol's ``receive``, uvicorn's
proxy-headers middleware). X-Forwarded-* still apply to the HTTP stack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import inprocess
import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from websockets.asyncio.client import connect

from gateway.app import create_app
from gateway.server import server_config
from gateway.settings import Settings
from gateway.ws.batching import BatchingWebSocketProtocol
from tests.harness import free_port


@pytest.fixture
async def pod(redis_url: str) -> AsyncIterator[str]:
    settings = Settings(redis_url=redis_url, auth="disabled")
    port = free_port()
    app = create_app(settings)
    config = server_config(
        app, settings, port, ws=BatchingWebSocketProtocol, lifespan="on", access_log=False
    )
    async with inprocess.serving(config):
        yield f"127.0.0.1:{port}"


async def test_an_idle_subscriber_waits_with_nothing_between_the_server_and_the_endpoint(
    pod: str,
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{pod}") as http:
        created = await http.post("/event-stores", json={"name": "idle"})
        assert created.status_code == 201, created.text
    async with connect(f"ws://{pod}/event-stores/idle/events/ws") as ws:
        await ws.send(json.dumps({"action": "subscribe", "eventFilter": "*"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed"
        await asyncio.sleep(0.1)
        chains = [c for c in map(inprocess.awaiting_chain, asyncio.all_tasks()) if "events_ws" in c]
    assert len(chains) == 1, chains
    run_asgi, endpoint, awaited = chains[0]
    assert run_asgi.endswith(".run_asgi") and endpoint == "events_ws", chains
    assert awaited in ("Future", "FutureIter"), chains  # (the C future's __await__)


def test_forwarded_headers_still_apply_to_the_http_stack() -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", auth="disabled"))
    applied = [m for m in app.user_middleware if m.cls is ProxyHeadersMiddleware]
    assert len(applied) == 1
    assert applied[0].kwargs == {"trusted_hosts": "127.0.0.1"}
