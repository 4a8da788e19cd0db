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
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import codec
from ..errors import InvalidSubscriptionConfig
from ..filters import Filter, InvalidFilter
from ..keys import valid_subscription_id
from ..types import MAX_POSITION, StartPosition, TimeStart
from .signing import secret_key

MAX_URL_LENGTH = 2048
MAX_HEADERS = 32
MAX_HEADER_VALUE = 4096
MAX_TIMEOUT_SECONDS = 300.0
MAX_ATTEMPTS = 100
MAX_BACKOFF_SECONDS = 24 * 3600.0
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "connection",
        "transfer-encoding",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
"""Headers deltagate sets itself; a subscription may not override them."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int | None = None
    """Attempts in all, the first included. None: the dispatcher's default."""
    backoff_seconds: float | None = None
    """Ceiling of the first retry's delay, doubling per retry. None: the default schedule."""

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_attempts is not None:
            out["maxAttempts"] = self.max_attempts
        if self.backoff_seconds is not None:
            out["backoffSeconds"] = self.backoff_seconds
        return out


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What a subscription delivers where. Build with ``WebhookConfig.build`` (validates)."""

    filter: Filter
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    """Seconds per request. None: the dispatcher's default."""
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
        timeout: object = None,
        max_attempts: object = None,
        backoff_seconds: object = None,
        backoff_minutes: object = None,
        subscriber_id: object = None,
        prefix: str = "",
    ) -> WebhookConfig:
        """Validate a subscription's parts; raise InvalidSubscriptionConfig listing every
        problem. ``prefix`` names where the webhook's own fields sit in the caller's body."""
        problems: list[dict[str, str]] = []

        def bad(where: str, message: str) -> None:
            problems.append({"field": where, "message": message})

        flt: Filter | None = None
        try:
            flt = Filter.parse(event_filter, stream_id)
        except InvalidFilter as exc:
            bad("streamId" if "streamId" in str(exc) else "eventFilter", str(exc))
        checked_url = _check_url(url, prefix + "url", bad)
        checked_headers = _check_headers(headers, prefix + "headers", bad)
        checked_timeout: float | None = None
        if timeout is not None:
            if not _number(timeout) or not 0 < float(timeout) <= MAX_TIMEOUT_SECONDS:  # type: ignore[arg-type]
                bad(prefix + "timeout", f"seconds, more than 0 and at most {MAX_TIMEOUT_SECONDS:g}")
            else:
                checked_timeout = float(timeout)  # type: ignore[arg-type]
        attempts: int | None = None
        if max_attempts is not None:
            if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
                bad(prefix + "retryPolicy.maxAttempts", "must be an integer")
            elif not 1 <= max_attempts <= MAX_ATTEMPTS:
                bad(prefix + "retryPolicy.maxAttempts", f"must be 1 to {MAX_ATTEMPTS}")
            else:
                attempts = max_attempts
        backoff: float | None = None
        if backoff_seconds is not None and backoff_minutes is not None:
            bad(prefix + "retryPolicy", "give backoffSeconds or backoffMinutes, not both")
        for name, value, unit in (
            ("backoffSeconds", backoff_seconds, 1.0),
            ("backoffMinutes", backoff_minutes, 60.0),
        ):
            if value is None:
                continue
            seconds = float(value) * unit if _number(value) else math.nan  # type: ignore[arg-type]
            if not 0 < seconds <= MAX_BACKOFF_SECONDS:
                bad(
                    f"{prefix}retryPolicy.{name}",
                    f"must be more than 0 and at most {MAX_BACKOFF_SECONDS / unit:g}",
                )
            else:
                backoff = seconds
        if subscriber_id is not None and (
            not isinstance(subscriber_id, str) or not 1 <= len(subscriber_id) <= 256
        ):
            bad("subscriberId", "must be a string of 1 to 256 characters")
        if problems or flt is None or checked_url is None:
            raise InvalidSubscriptionConfig(problems)
        return cls(
            flt,
            checked_url,
            checked_headers,
            checked_timeout,
            RetryPolicy(attempts, backoff),
            subscriber_id,  # type: ignore[arg-type]
        )

    def fingerprint(self) -> str:
        """Equal for subscriptions with the same filter, URL and headers (the duplicate rule):
        pattern order and header name case do not matter."""
        canonical = [
            sorted(self.filter.patterns),
            self.filter.stream_id,
            self.url,
            sorted((name.lower(), value) for name, value in self.headers),
        ]
        return hashlib.sha256(codec.dumps(canonical)).hexdigest()

    def wire(self) -> dict[str, Any]:
        """The config as stored (and shown, header values aside)."""
        out: dict[str, Any] = {"eventFilter": self.filter.wire}
        if self.filter.stream_id is not None:
            out["streamId"] = self.filter.stream_id
        out["url"] = self.url
        out["headers"] = dict(self.headers)
        if self.timeout is not None:
            out["timeout"] = self.timeout
        out["retryPolicy"] = self.retry.wire()
        if self.subscriber_id is not None:
            out["subscriberId"] = self.subscriber_id
        return out

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> WebhookConfig:
        """A config as stored (validated when it was built)."""
        patterns = value["eventFilter"]
        retry = value.get("retryPolicy") or {}
        return cls(
            Filter(
                tuple([patterns] if isinstance(patterns, str) else patterns), value.get("streamId")
            ),
            value["url"],
            tuple(value.get("headers", {}).items()),
            value.get("timeout"),
            RetryPolicy(retry.get("maxAttempts"), retry.get("backoffSeconds")),
            value.get("subscriberId"),
        )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_url(value: object, where: str, bad: Any) -> str | None:
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
    if host.startswith("[") or ":" in host:
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            bad(where, "has an invalid host")
            return None
    return value


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
        elif lower in RESERVED_HEADERS:
            bad(f"{where}.{name}", "is set by deltagate and cannot be configured")
        elif lower in seen:
            bad(f"{where}.{name}", "is given twice")
        elif not isinstance(text, str):
            bad(f"{where}.{name}", "must be a string")
        elif len(text) > MAX_HEADER_VALUE or any(
            (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text
        ):
            bad(f"{where}.{name}", "must hold no control characters and be at most 4096 long")
        else:
            seen.add(lower)
            out.append((str(name), text))
    return tuple(sorted(out, key=lambda item: item[0].lower()))


def check_position(value: object) -> StartPosition:
    """``latest``, ``earliest``, a globalPosition >= 0 or ``{"time": ISO 8601}``;
    InvalidSubscriptionConfig otherwise."""
    if value in ("latest", "earliest"):
        return value  # type: ignore[return-value]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POSITION:
        return value
    if isinstance(value, dict):
        try:
            return TimeStart.parse(value)
        except ValueError as exc:
            raise InvalidSubscriptionConfig([{"field": "position", "message": str(exc)}]) from None
    raise InvalidSubscriptionConfig(
        [
            {
                "field": "position",
                "message": "'latest', 'earliest', a globalPosition >= 0 or {\"time\": ...}",
            }
        ]
    )


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
