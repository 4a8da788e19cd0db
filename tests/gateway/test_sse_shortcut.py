"""The SSE GET skips the middleware stack (gateway/app.py ``Gateway``) yet answers an error
nothing handled as the stack does: the contract's 500, without CORS headers (the stack's error
middleware is outside the CORS one), and the error raised on for the server to log. Only that
path and method take the shortcut."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from gateway.sse import endpoint

ORIGIN = "https://app.example"


class Boom(Exception):
    pass


async def test_an_unhandled_error_is_the_contracts_500(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(request: object) -> None:
        raise Boom("a bug")

    monkeypatch.setattr(endpoint, "events_sse", broken)
    app = create_app(Settings(auth="disabled", allowed_origins=ORIGIN))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
        for path in ("/event-stores/abc/events/sse", "/api/event-stores/abc/events/sse"):
            answer = await client.get(path, headers={"Origin": ORIGIN})
            assert answer.status_code == 500
            assert answer.json() == {"error": "INTERNAL_ERROR", "message": "internal error"}
            assert "access-control-allow-origin" not in answer.headers
    raising = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=raising, base_url="http://pod") as client:
        with pytest.raises(Boom):
            await client.get("/event-stores/abc/events/sse")


def test_only_the_streams_get_matches() -> None:
    assert endpoint.match("/event-stores/abc/events/sse") == "abc"
    assert endpoint.match("/api/event-stores/abc/events/sse") == "abc"
    assert endpoint.match("/event-stores/abc/events/ws") is None
    assert endpoint.match("/event-stores/a/b/events/sse") is None
    assert endpoint.match("/v2/event-stores/abc/events/sse") is None
