"""An append skips the middleware stack (``Gateway._lean`` in gateway/app.py) and answers every
request exactly as the stack would: the same status, body and headers (the CORS ones among
them) for successes, refusals and Redis outages; an error nothing handled the contract's 500
without CORS headers, raised on for the server to log. Each request goes once through the app
and once through the stack itself (``FastAPI.__call__``), and the stack counts what reaches it:
the appends never do, everything else still does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from rest_support import PREFIXES

from broker import Unavailable
from gateway.app import create_app
from gateway.settings import Settings

ADMIN = "admin-key-for-the-lane-tests"
ORIGIN = "https://app.example"
KEY = {"X-API-Key": ADMIN, "Origin": ORIGIN}
VOLATILE = {"transactionId", "eventId", "createdAt", "createdNewStream"}
SKIPPED_HEADERS = {"date", "content-length"}


class Boom(Exception):
    pass


class Pair:
    """The app (appends take the lane) and the stack alone (``FastAPI.__call__``), on one
    runtime; ``stacked`` counts the requests that reached the app's middleware stack."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.stacked = 0
        built = app.build_middleware_stack()

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.stacked += 1
            await built(scope, receive, send)

        async def stack(scope: Any, receive: Any, send: Any) -> None:
            await FastAPI.__call__(app, scope, receive, send)

        app.middleware_stack = counted
        self.lane = self.client(app)
        self.stack = self.client(stack)

    @staticmethod
    def client(app: Any, raises: bool = False) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raises)
        return httpx.AsyncClient(transport=transport, base_url="http://pod")

    async def both(self, path: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
        return await self.lane.post(path, **kwargs), await self.stack.post(path, **kwargs)


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[Pair]:
    settings = Settings(
        redis_url=redis_url,
        auth="enabled",
        admin_key=ADMIN,
        allowed_origins=ORIGIN,
        auto_create_stores=False,
        max_body_bytes=4096,
        rate_appends_per_second=0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        pair = Pair(app)
        made = await pair.lane.post("/event-stores", json={"name": "orders"}, headers=KEY)
        assert made.status_code == 201, made.text
        pair.stacked = 0
        yield pair
        await pair.lane.aclose()
        await pair.stack.aclose()


def comparable(answer: Any) -> tuple[int, dict[str, str], Any]:
    """Status, headers and body, without what differs between two appends of the same events
    (ids, times, the positions they got, whether the stream was new)."""
    headers = {k: v for k, v in answer.headers.items() if k not in SKIPPED_HEADERS}
    body = answer.json()

    def steady(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: steady(v) if k not in VOLATILE else "-" for k, v in value.items()}
        if isinstance(value, list):
            return [steady(v) for v in value]
        return "<int>" if isinstance(value, int) and not isinstance(value, bool) else value

    return answer.status_code, headers, steady(body)


EVENT = {"type": "order.created", "data": {"id": 1}}
REQUESTS: list[tuple[str, str, dict[str, Any], int]] = [
    ("append", "/orders/streams/o-1", {"json": {"events": [EVENT]}, "headers": KEY}, 201),
    ("alias", "/orders/streams/o-1/events", {"json": {"events": [EVENT]}, "headers": KEY}, 201),
    (
        "several streams",
        "/orders/streams",
        {"json": {"streams": [{"streamId": "o-2", "events": [EVENT]}]}, "headers": KEY},
        201,
    ),
    ("dcb", "/orders/events", {"json": {"events": [EVENT]}, "headers": KEY}, 201),
    (
        "dcb query",
        "/orders/query",
        {"json": {"query": {"items": [{"types": ["order.created"]}]}}, "headers": KEY},
        200,
    ),
    ("no key", "/orders/streams/o-1", {"json": {"events": [EVENT]}}, 401),
    (
        "a wrong key",
        "/orders/streams/o-1",
        {"json": {"events": [EVENT]}, "headers": {"X-API-Key": "nope", "Origin": ORIGIN}},
        401,
    ),
    ("not JSON", "/orders/streams/o-1", {"content": b"{nope", "headers": KEY}, 400),
    ("no events", "/orders/streams/o-1", {"json": {"events": []}, "headers": KEY}, 400),
    (
        "a bad type",
        "/orders/streams/o-1",
        {"json": {"events": [{"type": "", "data": {}}]}, "headers": KEY},
        400,
    ),
    (
        "too large",
        "/orders/streams/o-1",
        {"json": {"events": [{"type": "a", "data": "x" * 5000}]}, "headers": KEY},
        413,
    ),
    (
        "a conflict",
        "/orders/streams/o-9",
        {"json": {"events": [EVENT], "expectedStreamVersion": 7}, "headers": KEY},
        409,
    ),
    (
        "a long idempotency key",
        "/orders/streams/o-1",
        {"json": {"events": [EVENT]}, "headers": {**KEY, "Idempotency-Key": "k" * 300}},
        400,
    ),
    ("an unknown query parameter", "/orders/streams/o-1?x=1", {"json": {"events": [EVENT]}}, 400),
    ("no such store", "/nothere/streams/o-1", {"json": {"events": [EVENT]}, "headers": KEY}, 404),
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [r[1:] for r in REQUESTS],
    ids=[r[0] for r in REQUESTS],
)
async def test_every_answer_is_the_stacks(
    pair: Pair, prefix: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    lane, stack = await pair.both(prefix + path, **kwargs)
    assert lane.status_code == status, lane.text
    assert comparable(lane) == comparable(stack)
    if "Origin" in kwargs.get("headers", {}):
        assert lane.headers["access-control-allow-origin"] == ORIGIN
    assert pair.stacked == 1  # the stack's own request, not the lane's


async def test_other_requests_still_take_the_stack(pair: Pair) -> None:
    read = await pair.lane.get("/event-stores/orders/streams/o-1", headers=KEY)
    assert read.status_code == 200, read.text
    made = await pair.lane.post("/event-stores", json={"name": "more"}, headers=KEY)
    assert made.status_code == 201, made.text
    not_allowed = await pair.lane.put("/event-stores/orders/streams/o-1", headers=KEY)
    assert not_allowed.status_code == 405
    assert "POST" in not_allowed.headers["allow"]
    assert pair.stacked == 3


def appends_raise(pair: Pair, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """Every append of the pair's pod raises ``error`` (Redis gone, a bug)."""

    async def raising(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(pair.app.state.runtime.log, "append", raising)


APPEND = "/orders/streams/o-1"


async def test_redis_unavailable_is_the_same_503(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    appends_raise(pair, monkeypatch, Unavailable("redis went away"))
    lane, stack = await pair.both(f"/event-stores{APPEND}", json={"events": [EVENT]}, headers=KEY)
    assert lane.status_code == 503
    assert comparable(lane) == comparable(stack)
    assert pair.stacked == 1


async def test_an_unhandled_error_is_the_contracts_500(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    appends_raise(pair, monkeypatch, Boom("a bug"))
    for prefix in PREFIXES:
        lane, stack = await pair.both(prefix + APPEND, json={"events": [EVENT]}, headers=KEY)
        assert lane.status_code == 500
        assert lane.json() == {"error": "INTERNAL_ERROR", "message": "internal error"}
        assert "access-control-allow-origin" not in lane.headers
        assert comparable(lane) == comparable(stack)
    assert pair.stacked == 2  # the stack's own requests
    async with pair.client(pair.app, raises=True) as raising:  # what the server would log
        with pytest.raises(Boom):
            await raising.post(f"/event-stores{APPEND}", json={"events": [EVENT]}, headers=KEY)
