"""One delivery attempt: the signed POST of one event to a subscription's URL, and what came of it
(``success`` for any 2xx, else ``failure`` or ``timeout`` with the error a subscription shows as
``lastError``). Retrying is the worker's decision (``retry``); this module sends once.

``lastError`` is no port scanner: every failure without an HTTP answer (refused, reset, timed
out, TLS, not HTTP, a name that does not resolve, an address the policy refuses) reads the same,
``CONNECTION_FAILED``; only an HTTP status is told apart (``HTTP 503``). The precise cause goes to
the dispatcher's log, for the operator.

The HTTP client is this package's own (``client.Origin``: keep-alive connections, llhttp parsing
the answers): measured on the bench host, a bare keep-alive POST loop costs ~20 us of CPU per
request with it, ~70 us with aiohttp (which the dispatcher used before) and ~290 us with
httpcore. ``Sender`` holds what the requests of one dispatcher replica share: the TLS context (CA
certificates loaded once), the address policy with its resolver (``targets.GuardedResolver``,
the SSRF guard at every connection) and the bound on requests in flight; ``Target`` what one
subscription's requests share: its connection pool (``Origin``), the fixed part of its requests'
head (request line, host, user agent unless the subscription sets its own, the subscription's
headers, content type) and timeout, built once per config, with the verdict on a literal address
in its URL. Requests never go through a proxy from the environment (``HTTP(S)_PROXY`` are
ignored): the address check must see the address actually connected to. A delivery's body is
built once per event (``Envelope.body``); only the timestamp and signature are made per attempt,
as a retry minutes later needs a fresh timestamp for receivers that check it."""

from __future__ import annotations

import base64
import logging
import ssl
import time
from importlib.metadata import version
from typing import Any, Literal, NamedTuple
from urllib.parse import quote, unquote, urlsplit

from .. import codec
from ..aio import Slots
from .client import Origin
from .config import WebhookConfig, request_host, unsendable
from .signing import Signer
from .targets import GuardedResolver, Resolver, TargetPolicy, literal_refusal

log = logging.getLogger("deltagate.dispatcher")

Result = Literal["success", "failure", "timeout"]

USER_AGENT = f"deltagate-webhooks/{version('deltagate')}"
IDLE_SECONDS = 15.0
"""How long an idle keep-alive connection is kept for the next request."""
CONNECTION_FAILED = "could not connect (no HTTP answer)"
"""``lastError`` of every attempt that got no HTTP status, whatever the cause."""
INVALID_REQUEST = "the subscription's URL or headers cannot be sent"
_PATH_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
"""A URL's path and query are sent as written; only non-ASCII is percent-encoded (UTF-8)."""


class Attempt(NamedTuple):
    result: Result
    error: str
    seconds: float


class Envelope:
    """What a subscription's deliveries POST: ``{**fields, "event": <the event's stored JSON>}``,
    the fields encoded once per subscription (``body`` per event is then two joins, not an
    encoding of the fields each time)."""

    __slots__ = ("_head",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self._head = codec.json_object(fields, event="0")[:-2]  # (up to `"event":`)

    def body(self, event_json: str) -> bytes:
        return b"".join((self._head, event_json.encode(), b"}"))


class Target:
    """Where one subscription's deliveries go, and its pool of keep-alive connections (at most
    ``max_in_flight``: never more requests at once). ``close()`` when done."""

    __slots__ = (
        "_limit",
        "_sender",
        "head",
        "invalid",
        "origin",
        "refused",
        "seconds",
        "shown_url",
        "sign",
        "url",
    )

    def __init__(
        self, sender: Sender, config: WebhookConfig, key: bytes, max_in_flight: int
    ) -> None:
        self._sender = sender
        self._limit = max_in_flight
        self.origin: Origin | None = None
        self.url = ""
        self.update(config, key)

    def update(self, config: WebhookConfig, key: bytes) -> None:
        """The subscription's config (or secret) changed: requests from now on use the new."""
        sender = self._sender
        if config.url != self.url and self.origin is not None:
            self.origin.close()  # (its requests in flight finish on their connections)
            self.origin = None
        self.url = config.url
        self.shown_url = config.shown_url
        parts = urlsplit(config.url)
        host = parts.hostname or ""
        self.refused = literal_refusal(host, sender.targets)
        """Why the URL's literal address may not be reached (checked once, not per request)."""
        why = unsendable(config.url, config.headers)
        self.invalid = None if why is None else f"{why[0]} {why[1]}"
        """Why the URL or headers cannot be sent (a record stored before today's checks)."""
        self.sign = Signer(key)
        self.seconds = config.timeout or sender.timeout
        self.head = b""
        if self.invalid is not None:
            return
        tls = parts.scheme == "https"
        name = request_host(host)  # (``unsendable`` saw that these can be made)
        port = parts.port or (443 if tls else 80)
        shown_host = f"[{name}]" if ":" in name else name
        if port != (443 if tls else 80):
            shown_host = f"{shown_host}:{port}"
        lines = [
            f"POST {quote(parts.path or '/', safe=_PATH_SAFE)}"
            f"{'?' + quote(parts.query, safe=_PATH_SAFE) if parts.query else ''} HTTP/1.1",
            f"host: {shown_host}",
        ]
        if all(n.lower() != "user-agent" for n, _ in config.headers):
            lines.append(f"user-agent: {USER_AGENT}")  # (a configured one replaces it)
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            lines.append(f"authorization: Basic {base64.b64encode(credentials.encode()).decode()}")
        lines.extend(f"{n}: {v}" for n, v in config.headers)
        lines.append("content-type: application/json\r\n")
        self.head = "\r\n".join(lines).encode()
        if self.origin is None:
            self.origin = Origin(
                name.strip("[]"),
                port,
                tls=sender.ssl_context() if tls else None,
                resolve=sender.resolver,
                limit=self._limit,
                idle_seconds=IDLE_SECONDS,
            )

    async def close(self) -> None:
        if self.origin is not None:
            self.origin.close()


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
        self.resolver = GuardedResolver(targets, resolver)
        """Every connection's addresses: resolved once, each checked (the SSRF guard)."""
        self._ssl: ssl.SSLContext | None = None
        self._slots = Slots(max_connections)

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
        if not (event_id.isascii() and event_id.isprintable()):
            _log_failure(target, "refused", f"event id {event_id!r} cannot be a header value")
            return Attempt("failure", INVALID_REQUEST, 0.0)
        assert target.origin is not None  # (made whenever the target is valid)
        stamp = int(time.time())
        sign = target.sign(event_id, stamp, data)
        request = b"".join(
            (
                target.head,
                f"webhook-id: {event_id}\r\nwebhook-timestamp: {stamp}\r\n"
                f"webhook-signature: {sign}\r\ncontent-length: {len(data)}\r\n\r\n".encode(),
                data,
            )
        )
        slots = self._slots
        if not slots.take():
            await slots.wait()
        started = time.perf_counter()
        try:
            status = await target.origin.request(request, target.seconds)
        except TimeoutError as exc:
            _log_failure(target, exc.__class__.__name__, f"no answer within {target.seconds:g} s")
            return Attempt("timeout", CONNECTION_FAILED, _since(started))
        except (OSError, ValueError) as exc:
            _log_failure(target, exc.__class__.__name__, str(exc) or exc.__class__.__name__)
            return Attempt("failure", CONNECTION_FAILED, _since(started))
        finally:
            slots.give()
        seconds = _since(started)
        if 200 <= status < 300:
            return Attempt("success", "", seconds)
        hint = " (redirects are not followed)" if 300 <= status < 400 else ""
        return Attempt("failure", f"HTTP {status}{hint}", seconds)


def _log_failure(target: Target, kind: str, detail: str) -> None:
    log.info(
        "webhook delivery failed without an HTTP answer",
        extra={"url": target.shown_url, "error": f"{kind}: {detail}"},
    )


def _since(started: float) -> float:
    return time.perf_counter() - started
