"""One delivery attempt: the signed POST of one event to a subscription's URL, and what came of it
(``success`` for any 2xx, else ``failure`` or ``timeout`` with the error a subscription shows as
``lastError``). Retrying is the worker's decision (``retry``); this module sends once.

``lastError`` is no port scanner: every failure without an HTTP answer (refused, reset, timed
out, TLS, not HTTP, a name that does not resolve, an address the policy refuses) reads the same,
``CONNECTION_FAILED``; only an HTTP status is told apart (``HTTP 503``). The precise cause goes to
the dispatcher's log, for the operator.

The HTTP client is aiohttp's: measured on this project's bench host, a bare keep-alive POST loop
costs ~110 us of CPU per request with aiohttp and ~400 us with httpcore (the pool under httpx,
which the dispatcher used before; the rest of httpx came on top). ``Sender`` holds what the
requests of one dispatcher replica share: the TLS context (CA certificates loaded once), the
address policy with its resolver (``targets.GuardedResolver``, the SSRF guard at every
connection) and the bound on requests in flight; ``Target`` what one subscription's requests
share: its connection pool (a session of its own, keep-alive), URL, headers and timeout, built
once, with the verdict on a literal address in its URL (aiohttp skips the resolver for those).
Requests never go through a proxy from the environment (``HTTP(S)_PROXY`` are ignored): the
address check must see the address actually connected to. A delivery's body
is built once per event (``body``); only the timestamp and signature are made per attempt, as
a retry minutes later needs a fresh timestamp for receivers that check it."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from .. import codec
from .config import HEADER_NAME, WebhookConfig
from .signing import signature
from .targets import GuardedResolver, Resolver, TargetPolicy, literal_refusal

log = logging.getLogger("deltagate.dispatcher")

Result = Literal["success", "failure", "timeout"]

ERROR_BODY_BYTES = 64 * 1024
"""Response bytes read (then dropped) so a connection can be reused."""
USER_AGENT = f"deltagate-webhooks/{version('deltagate')}"
IDLE_SECONDS = 15.0
"""How long an idle keep-alive connection is kept for the next request."""
CONNECTION_FAILED = "could not connect (no HTTP answer)"
"""``lastError`` of every attempt that got no HTTP status, whatever the cause."""
INVALID_REQUEST = "the subscription's URL or headers cannot be sent"


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
        "_policy",
        "headers",
        "invalid",
        "key",
        "refused",
        "seconds",
        "session",
        "shown_url",
        "timeout",
        "url",
    )

    def __init__(
        self, sender: Sender, config: WebhookConfig, key: bytes, max_in_flight: int
    ) -> None:
        self._default_seconds = sender.timeout
        self._policy = sender.targets
        self.update(config, key)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=max_in_flight,
                ssl=sender.ssl_context(),
                keepalive_timeout=IDLE_SECONDS,
                resolver=sender.resolver,  # the SSRF guard: only checked addresses
            ),
            headers={"user-agent": USER_AGENT},
            # No proxy from the environment (the address check must see the address connected
            # to), and no .netrc: trust_env would also cost two thread-pool hops per request.
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )

    def update(self, config: WebhookConfig, key: bytes) -> None:
        """The subscription's config (or secret) changed: requests from now on use the new."""
        self.url = config.url
        self.shown_url = config.shown_url
        host = urlsplit(config.url).hostname or ""
        self.refused = literal_refusal(host, self._policy)
        """Why the URL's literal address may not be reached (checked once, not per request)."""
        self.invalid = _unsendable(config)
        """Why the URL or headers cannot be sent (a record stored before today's checks)."""
        self.key = key
        self.seconds = config.timeout or self._default_seconds
        self.timeout = aiohttp.ClientTimeout(total=self.seconds)
        self.headers = {**dict(config.headers), "content-type": "application/json"}

    async def close(self) -> None:
        await self.session.close()


class Sender:
    """Sends deliveries for one dispatcher replica."""

    def __init__(
        self,
        *,
        timeout: float,
        max_connections: int,
        targets: TargetPolicy,
        resolver: Resolver | None = None,
    ) -> None:
        self.timeout = timeout
        self.targets = targets
        """Which addresses webhooks may reach."""
        self._resolver = resolver
        self._guard: GuardedResolver | None = None
        self._ssl: ssl.SSLContext | None = None
        self._slots = asyncio.Semaphore(max_connections)

    @property
    def resolver(self) -> GuardedResolver:
        """The guarded resolver every subscription's connector uses (made in the loop)."""
        if self._guard is None:
            self._guard = GuardedResolver(self.targets, self._resolver)
        return self._guard

    async def close(self) -> None:
        """Release the resolver (after every ``Target`` is closed)."""
        if self._guard is not None:
            guard, self._guard = self._guard, None
            await guard.close()

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
        if target.refused is not None or target.invalid is not None:
            # Nothing is sent: a literal address the policy refuses, or a URL or header that
            # cannot be (stored before they were checked as they are now).
            why = target.refused or target.invalid
            _log_failure(target, "refused", str(why))
            if target.refused is not None:
                return Attempt("failure", CONNECTION_FAILED, 0.0)
            return Attempt("failure", INVALID_REQUEST, 0.0)
        stamp = int(time.time())
        headers = target.headers.copy()
        headers["webhook-id"] = event_id
        headers["webhook-timestamp"] = str(stamp)
        headers["webhook-signature"] = signature(target.key, event_id, stamp, data)
        async with self._slots:
            started = time.perf_counter()
            try:
                status = await _post(target, data, headers)
            except TimeoutError as exc:
                _log_failure(
                    target, exc.__class__.__name__, f"no answer within {target.seconds:g} s"
                )
                return Attempt("timeout", CONNECTION_FAILED, _since(started))
            except aiohttp.InvalidURL as exc:
                _log_failure(target, exc.__class__.__name__, str(exc))
                return Attempt("failure", INVALID_REQUEST, _since(started))
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                _log_failure(target, exc.__class__.__name__, str(exc) or exc.__class__.__name__)
                return Attempt("failure", CONNECTION_FAILED, _since(started))
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
    ) as response:
        if response.content_length != 0:
            content, read = response.content, 0
            while read <= ERROR_BODY_BYTES:
                chunk = await content.readany()
                if not chunk:
                    break
                read += len(chunk)
        return response.status


def _unsendable(config: WebhookConfig) -> str | None:
    """Why a stored config's URL or headers cannot be sent as they are checked today (None:
    they can): a header name that is not a token, a value that is not printable ASCII."""
    parts = urlsplit(config.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"the URL {config.shown_url} is not an http(s) URL with a host"
    for name, value in config.headers:
        if not HEADER_NAME.fullmatch(name):
            return f"header name {name!r} is not valid"
        if any(not (c == "\t" or " " <= c <= "~") for c in value):
            return f"header {name} is not printable ASCII"
    return None


def _log_failure(target: Target, kind: str, detail: str) -> None:
    log.info(
        "webhook delivery failed without an HTTP answer",
        extra={"url": target.shown_url, "error": f"{kind}: {detail}"},
    )


def _since(started: float) -> float:
    return time.perf_counter() - started
