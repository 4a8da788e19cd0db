"""One delivery attempt: the signed POST of one event to a subscription's URL, and what came of it
(``success`` for any 2xx, else ``failure`` or ``timeout`` with the error a subscription shows as
``lastError``). Retrying is the worker's decision (``retry``); this module sends once.

``lastError`` is no port scanner: every failure without an HTTP answer (refused, reset, timed
out, TLS, not HTTP, a name that does not resolve, an address the policy refuses) reads the same,
``CONNECTION_FAILED``; only an HTTP status is told apart (``HTTP 503``). The precise cause goes to
the dispatcher's log, for the operator.

``Sender`` holds what the requests of one dispatcher replica share: the TLS context (CA
certificates loaded once), the address policy (``targets``), the bound on requests in flight,
and a small connection pool per subscription. Connections go through ``targets.GuardedBackend``,
and never through a proxy from the environment (the check must see the address connected to)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

import httpcore
import httpx

from .. import codec
from .config import WebhookConfig
from .signing import signature
from .targets import GuardedBackend, Resolver, TargetPolicy

log = logging.getLogger("deltagate.dispatcher")

Result = Literal["success", "failure", "timeout"]

ERROR_BODY_BYTES = 64 * 1024
"""Response bytes read (then dropped) so a connection can be reused."""
USER_AGENT = f"deltagate-webhooks/{version('deltagate')}"
CONNECTION_FAILED = "connection failed (no HTTP answer)"
"""``lastError`` of every attempt that got no HTTP status, whatever the cause."""
INVALID_REQUEST = "the subscription's URL or headers cannot be sent"


@dataclass(frozen=True, slots=True)
class Attempt:
    result: Result
    error: str
    seconds: float


class Sender:
    """Sends deliveries for one dispatcher replica."""

    def __init__(
        self,
        *,
        timeout: float,
        max_in_flight: int,
        keepalive: int,
        max_connections: int,
        targets: TargetPolicy,
        resolver: Resolver | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._timeout = timeout
        self._backend = GuardedBackend(targets, resolver)
        self._max_in_flight = max_in_flight
        self._keepalive = keepalive
        self._http = http
        """A client shared by every subscription (tests); by default each has its own."""
        self._ssl: Any = None
        self._slots = asyncio.Semaphore(max_connections)

    def start(self) -> None:
        """Load the CA certificates (once per replica, not per subscription)."""
        if self._http is None and self._ssl is None:
            self._ssl = httpx.create_ssl_context()

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for one subscription. Each has its own small pool: httpcore's pool
        bookkeeping costs O(connections**2) per request, so one pool for every subscription
        would make each request dearer the more subscriptions a replica holds."""
        if self._http is not None:
            return self._http
        self.start()
        limits = httpx.Limits(
            max_connections=self._max_in_flight,
            max_keepalive_connections=min(self._keepalive, self._max_in_flight),
        )
        transport = httpx.AsyncHTTPTransport(verify=self._ssl, limits=limits, trust_env=False)
        # httpx builds its httpcore pool without a way to pass a network backend: replace the
        # pool with the same one on the guarded backend (tests/webhooks/test_targets.py holds
        # that every connection goes through it).
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=self._ssl,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=self._backend,
        )
        return httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
            trust_env=False,
        )

    async def release(self, client: httpx.AsyncClient) -> None:
        if client is not self._http:
            await client.aclose()

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Bounds the replica's requests in flight to its connection pool, so waiting for a
        connection never counts against a request's timeout."""
        async with self._slots:
            yield

    async def deliver(
        self,
        http: httpx.AsyncClient,
        config: WebhookConfig,
        key: bytes,
        fields: dict[str, Any],
        event_id: str,
        event_json: str,
    ) -> Attempt:
        """POST ``{event, **fields}`` signed with ``key``; never raises for the endpoint's sake."""
        timeout = config.timeout or self._timeout
        body = codec.json_object(fields, event=event_json)
        stamp = int(time.time())
        headers = dict(config.headers)
        headers["content-type"] = "application/json"
        headers["webhook-id"] = event_id
        headers["webhook-timestamp"] = str(stamp)
        headers["webhook-signature"] = signature(key, event_id, stamp, body)
        async with self._slot():
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    status = await _post(http, config.url, body, headers, timeout)
            except (UnicodeError, httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
                # The subscription's own URL or headers (one stored before they were checked
                # as they are now): nothing was sent, so nothing about the network is told.
                _log_failure(config, exc, str(exc))
                return Attempt("failure", INVALID_REQUEST, _since(started))
            except (TimeoutError, httpx.TimeoutException) as exc:
                _log_failure(config, exc, f"no answer within {timeout:g} s")
                return Attempt("timeout", CONNECTION_FAILED, _since(started))
            except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
                _log_failure(config, exc, str(exc) or exc.__class__.__name__)
                return Attempt("failure", CONNECTION_FAILED, _since(started))
        seconds = _since(started)
        if 200 <= status < 300:
            return Attempt("success", "", seconds)
        hint = " (redirects are not followed)" if 300 <= status < 400 else ""
        return Attempt("failure", f"HTTP {status}{hint}", seconds)


async def _post(
    http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], seconds: float
) -> int:
    """POST and return the status; the response body is read (up to a bound, so the connection
    can be reused) and dropped. ``seconds`` bounds each phase (connect, write, read); the caller
    bounds the whole."""
    async with http.stream("POST", url, content=body, headers=headers, timeout=seconds) as response:
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > ERROR_BODY_BYTES:
                break
        return response.status_code


def _log_failure(config: WebhookConfig, exc: BaseException, detail: str) -> None:
    log.info(
        "webhook delivery failed without an HTTP answer",
        extra={"url": config.shown_url, "error": f"{exc.__class__.__name__}: {detail}"},
    )


def _since(started: float) -> float:
    return time.perf_counter() - started
