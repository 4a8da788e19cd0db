"""One delivery attempt: the signed POST of one event to a subscription's URL, and what came of it
(``success`` for any 2xx, else ``failure`` or ``timeout`` with the error a subscription shows as
``lastError``). Retrying is the worker's decision (``retry``); this module sends once.

The HTTP client is aiohttp's: measured on this project's bench host, a bare keep-alive POST loop
costs ~110 us of CPU per request with aiohttp and ~400 us with httpcore (the pool under httpx,
which the dispatcher used before; the rest of httpx came on top). ``Sender`` holds what the
requests of one dispatcher replica share: the TLS context (CA certificates loaded once) and the
bound on requests in flight; ``Target`` what one subscription's requests share: its connection
pool (a session of its own, keep-alive), URL, headers and timeout, built once. A delivery's body
is built once per event (``body``); only the timestamp and signature are made per attempt, as
a retry minutes later needs a fresh timestamp for receivers that check it."""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from .. import codec
from .config import WebhookConfig
from .signing import signature

Result = Literal["success", "failure", "timeout"]

ERROR_BODY_BYTES = 64 * 1024
"""Response bytes read (then dropped) so a connection can be reused."""
USER_AGENT = f"deltagate-webhooks/{version('deltagate')}"
IDLE_SECONDS = 15.0
"""How long an idle keep-alive connection is kept for the next request."""


@dataclass(frozen=True, slots=True)
class Attempt:
    result: Result
    error: str
    seconds: float


def body(fields: dict[str, Any], event_json: str) -> bytes:
    """What a delivery POSTs: ``{event, **fields}``, the event's stored JSON passed through."""
    return codec.json_object(fields, event=event_json)


class Target:
    """Where one subscription's deliveries go, and its pool of keep-alive connections (at most
    ``max_in_flight``: never more requests at once). ``close()`` when done."""

    __slots__ = (
        "_default_seconds",
        "headers",
        "key",
        "proxy",
        "seconds",
        "session",
        "timeout",
        "url",
    )

    def __init__(
        self, sender: Sender, config: WebhookConfig, key: bytes, max_in_flight: int
    ) -> None:
        self._default_seconds = sender.timeout
        self.update(config, key)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max_in_flight,
                ssl=sender.ssl_context(),
                keepalive_timeout=IDLE_SECONDS,
            ),
            headers={"user-agent": USER_AGENT},
            # The proxy is looked up once per target (``_env_proxy``), not per request:
            # aiohttp's trust_env does two thread-pool hops per request (proxy, .netrc).
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    def update(self, config: WebhookConfig, key: bytes) -> None:
        """The subscription's config (or secret) changed: requests from now on use the new."""
        self.url = config.url
        self.proxy = _env_proxy(config.url)
        self.key = key
        self.seconds = config.timeout or self._default_seconds
        self.timeout = aiohttp.ClientTimeout(total=self.seconds)
        self.headers = {**dict(config.headers), "content-type": "application/json"}

    async def close(self) -> None:
        await self.session.close()


class Sender:
    """Sends deliveries for one dispatcher replica."""

    def __init__(self, *, timeout: float, max_connections: int) -> None:
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        self._slots = asyncio.Semaphore(max_connections)

    def ssl_context(self) -> ssl.SSLContext:
        """The CA certificates, loaded once per replica (not per subscription)."""
        if self._ssl is None:
            try:
                import certifi

                self._ssl = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover (httpx, a dependency, brings certifi)
                self._ssl = ssl.create_default_context()
        return self._ssl

    async def deliver(self, target: Target, event_id: str, data: bytes) -> Attempt:
        """POST ``data`` signed for ``event_id``; never raises for the endpoint's sake. Waiting
        for one of the replica's ``max_connections`` slots does not count against the timeout."""
        stamp = int(time.time())
        headers = target.headers.copy()
        headers["webhook-id"] = event_id
        headers["webhook-timestamp"] = str(stamp)
        headers["webhook-signature"] = signature(target.key, event_id, stamp, data)
        async with self._slots:
            started = time.perf_counter()
            try:
                status = await _post(target, data, headers)
            except TimeoutError:
                return Attempt("timeout", f"no answer within {target.seconds:g} s", _since(started))
            except aiohttp.ClientConnectorError as exc:
                return Attempt("failure", f"ConnectError: {exc}", _since(started))
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                detail = str(exc) or exc.__class__.__name__
                return Attempt("failure", f"{exc.__class__.__name__}: {detail}", _since(started))
        seconds = _since(started)
        if 200 <= status < 300:
            return Attempt("success", "", seconds)
        hint = " (redirects are not followed)" if 300 <= status < 400 else ""
        return Attempt("failure", f"HTTP {status}{hint}", seconds)


async def _post(target: Target, data: bytes, headers: dict[str, str]) -> int:
    """POST and return the status; the response body is read (up to a bound, so the connection
    can be reused; past it the connection is closed) and dropped."""
    async with target.session.post(
        target.url,
        data=data,
        headers=headers,
        allow_redirects=False,
        timeout=target.timeout,
        proxy=target.proxy,
    ) as response:
        if response.content_length != 0:
            content, read = response.content, 0
            while read <= ERROR_BODY_BYTES:
                chunk = await content.readany()
                if not chunk:
                    break
                read += len(chunk)
        return response.status


def _env_proxy(url: str) -> str | None:
    """The proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` name for ``url``, unless ``NO_PROXY`` exempts
    its host (the standard library's reading of the environment)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme)
    if proxy is None or (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
        return None
    return proxy


def _since(started: float) -> float:
    return time.perf_counter() - started
