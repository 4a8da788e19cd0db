"""Fixtures for the Studio tests: Debian's headless Chromium driven by Playwright (never
``playwright install``), a real gateway process in the embedded dev mode, a webhook receiver and a
``deltagate dispatcher`` process on the private Redis.

With CI=true a missing chromium or playwright package fails the tests instead of skipping them.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import ARTIFACTS, CHROMIUM_ARGS
from tests.harness import Pod
from tests.webhooks.support import DispatcherProcess

VIEWPORT = {"width": 1366, "height": 820}  # a laptop screen
# Settings of the surrounding environment that must not leak into the gateways started here.
FOREIGN = (
    "DELTAGATE_REDIS_URL",
    "DELTAGATE_AUTH",
    "DELTAGATE_ADMIN_KEY",
    "DELTAGATE_ADMIN_KEY_FILE",
    "DELTAGATE_CONFIG",
    "DELTAGATE_ALLOWED_ORIGINS",
)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (empty session storage) and page; fails on uncaught JS errors."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(5000)
    new = context.new_page()
    problems: list[str] = []  # uncaught exceptions and console errors
    new.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))

    def console(msg: Any) -> None:
        # A refused request (the 401 that detects auth) is logged by the browser itself.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            problems.append(f"console: {msg.text}")

    new.on("console", console)
    try:
        yield new
    finally:
        context.close()
    assert not problems, problems


@pytest.fixture(scope="module")
def dev_gateway() -> Iterator[Pod]:
    """`deltagate serve` in the embedded dev mode: no Redis URL, auth off by default."""
    pod = Pod({"DELTAGATE_REDIS_URL": ""})
    for name in FOREIGN:
        pod.env.pop(name, None)
    pod.start()
    try:
        yield pod
    finally:
        pod.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api(
    base: str, method: str, path: str, body: Any = None, key: str | None = None
) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.request(method, base + path, json=body, headers=headers, timeout=10)


def append(
    base: str, store: str, stream: str, events: list[dict[str, Any]], key: str | None = None
) -> dict[str, Any]:
    path = f"/event-stores/{store}/streams/{quote(stream, safe='')}"
    response = api(base, "POST", path, {"events": events}, key)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


class Receiver:
    """A webhook endpoint on a fixed port, started only when the test wants it to answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def event_ids(self) -> list[str]:
        return [body["event"]["eventId"] for body in self.bodies]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Dispatcher(DispatcherProcess):
    """One `deltagate dispatcher` process on the private Redis, with none of the surrounding
    environment's settings."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(redis_url, {"DELTAGATE_GRACE_PERIOD": "3"})
        for name in FOREIGN:
            if name != "DELTAGATE_REDIS_URL":
                self.env.pop(name, None)
