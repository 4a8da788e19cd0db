"""Fixtures for the client tests: Node with the `ws` package, headless Chromium, a retargetable
TCP proxy in front of the pods, and helpers to append and to read back what the log holds.

With CI=true a missing node, npm or chromium fails the tests instead of skipping them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.proxy import Proxy
from tests.conftest import ARTIFACTS, node_with_modules

NODE_DIR = Path(__file__).resolve().parent / "node"
# Fast checkpoints and polls, and a short drain, so failovers settle quickly.
FAST = {
    "DELTAGATE_CHECKPOINT_INTERVAL": "1",
    "DELTAGATE_POLL_INTERVAL": "0.5",
    "DELTAGATE_DRAIN_SECONDS": "0.5",
}


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tests/clients/node's dependencies (ws) installed."""
    return node_with_modules(NODE_DIR, ["ws"])


@pytest.fixture
def proxies() -> Iterator[list[Proxy]]:
    """Start proxies with ``Proxy(port).start()`` and append them here: all closed afterwards."""
    started: list[Proxy] = []
    yield started
    for proxy in started:
        proxy.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def append_sync(
    base_url: str, store: str, stream: str, events: list[dict[str, Any]], key: str | None = None
) -> dict[str, Any]:
    """Append through one pod, retrying transient failures with the same idempotency key."""
    headers = {"Idempotency-Key": key} if key else {}
    for _ in range(200):
        try:
            r = httpx.post(
                f"{base_url}/event-stores/{store}/streams/{stream}",
                json={"events": events},
                headers=headers,
                timeout=5,
            )
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if r.status_code == 503:
            time.sleep(0.05)
            continue
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]
    raise AssertionError("append kept failing")
