"""The gateway app in-process (``TestClient`` runs its lifespan) on the private redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rest_support import PREFIXES, TestClient

from gateway.app import create_app
from gateway.settings import Settings


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, auth="disabled", auto_create_stores=False)


def never_a_server_error(response: Any) -> None:
    """Every response of every REST test: no 5xx but 503 (Redis down), never a stack trace."""
    status = response.status_code
    assert status < 500 or status == 503, (
        f"{response.request.method} {response.request.url} -> {status}: {response.read()[:500]!r}"
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    # Server errors come back as responses so the hook can refuse them.
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        test_client.event_hooks = {"request": [], "response": [never_a_server_error]}
        yield test_client


@pytest.fixture(params=PREFIXES)
def base(request: pytest.FixtureRequest) -> str:
    """Both route prefixes, for tests that run under each."""
    return str(request.param)


@pytest.fixture
def store(client: TestClient) -> str:
    response = client.post("/event-stores", json={"name": "orders"})
    assert response.status_code == 201, response.text
    return "orders"
