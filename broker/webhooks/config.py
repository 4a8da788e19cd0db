"""A webhook subscription's config: what it delivers (filter) where (URL, headers), how long a
request may take and how failures are retried; the duplicate rule (``fingerprint``); and the
checks of every value. This is the one place subscription fields are validated: the REST API and
config files hand their bodies to ``broker.webhooks.request``, which checks the body's shape and
builds a ``WebhookConfig`` here; nothing else validates them again."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import codec
from ..errors import InvalidSubscriptionConfig
from ..filters import Content, Filter, InvalidFilter
from ..keys import valid_subscription_id
from ..types import StartPosition, parse_start
from .retry import RetryPolicy
from .signing import secret_key
from .targets import TargetPolicy, check_url_host

REDACTED = "[redacted]"

MAX_URL_LENGTH = 2048
MAX_HEADERS = 32
MAX_HEADER_VALUE = 4096
MAX_HEADER_BYTES = 16 * 1024
"""Names and values of a subscription's headers together."""
MAX_TIMEOUT_MS = 300_000
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        # hop-by-hop (RFC 9110 7.6.1): about the connection, not the request
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    }
)
"""Headers deltagate sets itself or that describe the connection; a subscription may not set
them, nor any ``webhook-*`` header (the signature's)."""
RESERVED_PREFIX = "webhook-"
NOT_IDNA = (
    "has a host name IDNA cannot encode (an empty or too long label, or a character not allowed)"
)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What a subscription delivers where. Build with ``WebhookConfig.build`` (validates)."""

    filter: Filter
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    """Seconds per request (given in milliseconds). None: the dispatcher's default."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    subscriber_id: str | None = None

    @classmethod
    def build(
        cls,
        *,
        event_filter: object,
        stream_id: object = None,
        url: object,
        headers: object = None,
        timeout_ms: object = None,
        retry_policy: dict[str, Any] | None = None,
        match: object = None,
        query: object = None,
        subscriber_id: object = None,
        prefix: str = "",
        targets: TargetPolicy | None = None,
    ) -> WebhookConfig:
        """Validate a subscription's parts; raise InvalidSubscriptionConfig listing every
        problem. ``prefix`` names where the webhook's own fields sit in the caller's body. With
        ``targets``, a URL naming an address the policy refuses is refused (requests check
        every subscription this way; code that builds configs itself may leave it out, and the
        dispatcher checks every connection in any case). ``event_filter`` may be None when a
        ``query`` gives the types."""
        problems: list[dict[str, str]] = []

        def bad(where: str, message: str) -> None:
            problems.append({"field": where, "message": message})

        flt: Filter | None = None
        try:
            content = None
            try:
                if match is not None or query is not None:
                    content = Content.parse(match, query)
            except InvalidFilter as exc:
                bad("query" if str(exc).startswith("query") else "match", str(exc))
                raise
            flt = Filter.parse(event_filter, stream_id, content)
        except InvalidFilter as exc:
            if not problems:
                bad("streamId" if "streamId" in str(exc) else "eventFilter", str(exc))
        checked_url = _check_url(url, prefix + "url", bad, targets)
        checked_headers = _check_headers(headers, prefix + "headers", bad)
        timeout: float | None = None
        if timeout_ms is not None:
            if not _number(timeout_ms) or not 1 <= float(timeout_ms) <= MAX_TIMEOUT_MS:  # type: ignore[arg-type]
                bad(prefix + "timeout", f"milliseconds, 1 to {MAX_TIMEOUT_MS}")
            else:
                timeout = float(timeout_ms) / 1000  # type: ignore[arg-type]
        retry = RetryPolicy.parse(retry_policy or {}, prefix + "retryPolicy", bad)
        if checked_url is not None:
            why = unsendable(checked_url, checked_headers)
            if why is not None:
                bad(prefix + why[0], why[1])
        if subscriber_id is not None and (
            not isinstance(subscriber_id, str) or not 1 <= len(subscriber_id) <= 256
        ):
            bad("subscriberId", "must be a string of 1 to 256 characters")
        if problems or flt is None or checked_url is None:
            raise InvalidSubscriptionConfig(problems)
        return cls(flt, checked_url, checked_headers, timeout, retry, subscriber_id)  # type: ignore[arg-type]

    @property
    def shown_url(self) -> str:
        """The URL as shown and logged: a ``user:password@`` part's password redacted."""
        return shown_url(self.url)

    @property
    def content(self) -> Content | None:
        """The content conditions (``match``, ``query``), if any."""
        return self.filter.contents[0] if self.filter.contents else None

    def fingerprint(self) -> str:
        """Equal for subscriptions with the same filter (patterns, stream, content conditions),
        URL, headers and timeout (the duplicate rule): pattern order and header name case do not
        matter. Parts added to the rule later are appended only when set, so a subscription
        stored before keeps its fingerprint."""
        canonical: list[Any] = [
            sorted(self.filter.patterns),
            self.filter.stream_id,
            self.url,
            sorted((name.lower(), value) for name, value in self.headers),
        ]
        if self.timeout is not None:
            canonical.append({"timeoutMs": self.timeout_ms})
        content = self.content
        if content is not None:
            canonical.append(
                {"match": content.match_wire, "query": content.query and content.query.wire}
            )
        return hashlib.sha256(codec.dumps(canonical)).hexdigest()

    @property
    def timeout_ms(self) -> float | int | None:
        if self.timeout is None:
            return None
        ms = round(self.timeout * 1000, 3)
        return int(ms) if ms == int(ms) else ms

    def wire(self) -> dict[str, Any]:
        """The config as stored (and shown, header values aside)."""
        out: dict[str, Any] = {"eventFilter": self.filter.wire}
        if self.filter.stream_id is not None:
            out["streamId"] = self.filter.stream_id
        out["url"] = self.url
        out["headers"] = dict(self.headers)
        if self.timeout is not None:
            out["timeoutMs"] = self.timeout_ms
        out["retryPolicy"] = self.retry.wire()
        content = self.content
        if content is not None and content.match_wire is not None:
            out["match"] = content.match_wire
        if content is not None and content.query is not None:
            out["query"] = content.query.wire
        if self.subscriber_id is not None:
            out["subscriberId"] = self.subscriber_id
        return out

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> WebhookConfig:
        """A config as stored (validated when it was built)."""
        patterns = value["eventFilter"]
        match, query = value.get("match"), value.get("query")
        content = None if match is None and query is None else Content.parse(match, query)
        # "timeout" (seconds) is how subscriptions stored before milliseconds kept it.
        timeout_ms = value.get("timeoutMs")
        return cls(
            Filter(
                tuple([patterns] if isinstance(patterns, str) else patterns),
                value.get("streamId"),
                (content,) if content else (),
                isinstance(patterns, list),
            ),
            value["url"],
            tuple(value.get("headers", {}).items()),
            value.get("timeout") if timeout_ms is None else timeout_ms / 1000,
            RetryPolicy.from_wire(value.get("retryPolicy") or {}),
            value.get("subscriberId"),
        )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_url(value: object, where: str, bad: Any, targets: TargetPolicy | None) -> str | None:
    if not isinstance(value, str) or not value:
        bad(where, "must be an http:// or https:// URL")
        return None
    if len(value) > MAX_URL_LENGTH:
        bad(where, f"is longer than {MAX_URL_LENGTH} characters")
        return None
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        bad(where, "must not contain spaces or control characters")
        return None
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        bad(where, f"is not a valid URL: {exc}")
        return None
    if parts.scheme not in ("http", "https"):
        bad(where, "must be an http:// or https:// URL")
        return None
    host = parts.hostname
    if not host:
        bad(where, "has no host")
        return None
    if port == 0:
        bad(where, "port 0 cannot be reached")
        return None
    try:
        host = request_host(host)  # (what is connected to is what is checked)
    except UnicodeError:
        bad(where, NOT_IDNA)
        return None
    if host.startswith("[") or ":" in host:
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            bad(where, "has an invalid host")
            return None
    why = None if targets is None else check_url_host(host, targets)
    if why is not None:
        bad(
            where,
            f"{why}: webhooks may only reach public addresses "
            "(an operator may allow networks with DELTAGATE_WEBHOOK_ALLOWED_NETWORKS)",
        )
        return None
    return value


def request_host(host: str) -> str:
    """A URL's host as requests name it (Host header, resolver, address checks): a name that
    is not ASCII in IDNA's ASCII form (``bücher.example`` is ``xn--bcher-kva.example``; full-width
    digits are ASCII ones, so a literal address can hide in them). UnicodeError when IDNA cannot
    encode it."""
    return host if host.isascii() else host.encode("idna").decode()


def unsendable(url: str, headers: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """Why no request can be made of ``url`` and ``headers`` (None: one can), as (the field at
    fault, what is wrong). ``WebhookConfig.build`` refuses such a config; the dispatcher asks
    again of every stored one (``delivery.Target``), as a record stored before a check existed
    must fail its attempts, not the worker. The checks that give finer messages at build run
    first there (``_check_url``, ``_check_headers``)."""
    try:
        url.encode()
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:  # (UnicodeEncodeError: a lone surrogate)
        return "url", f"is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "url", "must be an http:// or https:// URL with a host"
    try:
        request_host(parts.hostname)
    except UnicodeError:
        return "url", NOT_IDNA
    for name, value in headers:
        where = f"headers.{name}"
        if not HEADER_NAME.fullmatch(name):
            return where, "is not a valid header name"
        if any(not (c == "\t" or " " <= c <= "~") for c in value):
            return where, "must be printable ASCII"
        if name.lower() == "authorization" and parts.username is not None:
            return where, (
                "cannot be given with a user:password@ in the url, which deltagate sends as "
                "the authorization header: give one of them"
            )
    return None


def shown_url(url: str) -> str:
    """``url`` with the password of a ``user:password@`` part replaced: how a URL is shown
    and logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, rest = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return parts._replace(netloc=f"{name}:{REDACTED}@{rest}").geturl()


def _check_headers(value: object, where: str, bad: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        bad(where, "must be an object of header names to string values")
        return ()
    if len(value) > MAX_HEADERS:
        bad(where, f"at most {MAX_HEADERS} headers")
        return ()
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for name, text in value.items():
        lower = str(name).lower()
        if not HEADER_NAME.fullmatch(str(name)):
            bad(f"{where}.{name}", "is not a valid header name")
        elif lower in RESERVED_HEADERS or lower.startswith(RESERVED_PREFIX):
            bad(f"{where}.{name}", "is set by deltagate or the connection and cannot be configured")
        elif lower in seen:
            bad(f"{where}.{name}", "is given twice")
        elif not isinstance(text, str):
            bad(f"{where}.{name}", "must be a string")
        elif len(text) > MAX_HEADER_VALUE or any(not (c == "\t" or " " <= c <= "~") for c in text):
            bad(
                f"{where}.{name}",
                f"must be printable ASCII or tab (no CR, LF, NUL or other control characters) "
                f"and at most {MAX_HEADER_VALUE} long",
            )
        else:
            seen.add(lower)
            out.append((str(name), text))
    if sum(len(n) + len(v) for n, v in out) > MAX_HEADER_BYTES:
        bad(where, f"names and values together are longer than {MAX_HEADER_BYTES} characters")
    return tuple(sorted(out, key=lambda item: item[0].lower()))


def check_position(value: object) -> StartPosition:
    """``latest``, ``earliest``, a globalPosition >= 0 or ``{"time": ISO 8601}``;
    InvalidSubscriptionConfig otherwise."""
    try:
        return parse_start(value)
    except ValueError as exc:
        raise InvalidSubscriptionConfig([{"field": "position", "message": str(exc)}]) from None


def check_secret(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidSubscriptionConfig([{"field": "signingSecret", "message": "must be a string"}])
    try:
        secret_key(value)
    except ValueError as exc:
        raise InvalidSubscriptionConfig([{"field": "signingSecret", "message": str(exc)}]) from None
    return value


def check_id(value: object, where: str = "id") -> str:
    if not isinstance(value, str) or not valid_subscription_id(value):
        raise InvalidSubscriptionConfig(
            [{"field": where, "message": "1 to 128 of A-Z a-z 0-9 . _ - (not starting with . _ -)"}]
        )
    return value
