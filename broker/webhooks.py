"""Webhook subscriptions: their validated config, the duplicate rule, signing secrets, and their
records in Redis (status, progress, errors, dead letters). ``broker.dispatcher`` delivers them;
the gateway's REST API and config file manage them through ``WebhookStore``.

Layout (names built in ``broker.keys.WebhookKeys``). Everything of one store's subscriptions
carries the store's hash tag, so each script below runs in the store's slot:

    dg:{store}:whuid            string  uid of the store the subscriptions belong to (a deleted
                                        and re-created store of the same name starts empty)
    dg:{store}:whs              zset    subscription id -> creation time (ms): the listing
    dg:{store}:whfp             hash    fingerprint (filter + URL + headers) -> id: duplicates
    dg:{store}:wh:<id>          hash    config JSON, secret, status, statusReason, position
                                        (lastProcessedEventGlobalPosition), lastError,
                                        lastErrorAt, lastSuccessAt, failingSince, rev, ...
    dg:{store}:wh:<id>:lease    string  the dispatcher replica delivering it (expires)
    dg:{store}:wh:<id>:attempts hash    eventId -> "globalPosition|failed attempts"
    dg:{store}:wh:<id>:done     zset    positions delivered ahead of ``position``
    dg:{store}:wh:<id>:dlq      zset    dead-lettered eventId -> globalPosition
    dg:{store}:wh:<id>:redrive  zset    eventIds queued for redelivery -> globalPosition
    dg:{store}:wh:<id>:letters  hash    eventId -> dead-letter record JSON

``rev`` counts changes made through the API (pause, resume, redrive, a new config); the dispatcher
reloads a subscription whose ``rev`` moved. The scripts that record delivery outcomes
(``wh_progress``, ``wh_fail``, ``wh_dead``) are fenced by the lease: a replica that lost it can
never move a subscription's progress.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from . import codec
from .errors import InvalidSubscriptionConfig, StoreNotFound, SubscriptionNotFound
from .filters import Filter, InvalidFilter
from .keys import STORE_REGISTRY, WebhookKeys, valid_store_name, valid_subscription_id
from .redis import call, load_script
from .types import MAX_POSITION, StartPosition, now_iso

Status = Literal["active", "paused", "auto-paused"]
Outcome = Literal["created", "existing", "updated", "unchanged"]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
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


# -- signing (Standard Webhooks) --------------------------------------------------------------


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a signing secret starts with '{SECRET_PREFIX}'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("a signing secret is 'whsec_' + base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a signing secret holds 24 to 64 bytes")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# -- config -----------------------------------------------------------------------------------


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
    """``latest``, ``earliest`` or a globalPosition >= 0; InvalidSubscriptionConfig otherwise."""
    if value in ("latest", "earliest"):
        return value  # type: ignore[return-value]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POSITION:
        return value
    raise InvalidSubscriptionConfig(
        [{"field": "position", "message": "'latest', 'earliest' or a globalPosition >= 0"}]
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


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookSubscription:
    store: str
    id: str
    config: WebhookConfig
    status: Status
    created_at: str
    updated_at: str
    position: int
    """lastProcessedEventGlobalPosition: every matching event up to it is finished."""
    rev: int
    secret: str
    """Signs deliveries. Shown to the API client only when the subscription is created."""
    status_reason: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    last_success_at: str | None = None
    failing_since_ms: int | None = None
    dead_letters: int = 0

    @classmethod
    def from_record(cls, store: str, record: dict[str, str], dead: int = 0) -> WebhookSubscription:
        since = record.get("failingSince")
        return cls(
            store=store,
            id=record["id"],
            config=WebhookConfig.from_wire(codec.loads(record["config"])),
            status=record.get("status", "active"),  # type: ignore[arg-type]
            created_at=record.get("createdAt", ""),
            updated_at=record.get("updatedAt", ""),
            position=int(record.get("position") or 0),
            rev=int(record.get("rev") or 0),
            secret=record.get("secret", ""),
            status_reason=record.get("statusReason") or None,
            last_error=record.get("lastError") or None,
            last_error_at=record.get("lastErrorAt") or None,
            last_success_at=record.get("lastSuccessAt") or None,
            failing_since_ms=int(since) if since else None,
            dead_letters=dead,
        )


@dataclass(frozen=True, slots=True)
class Created:
    subscription: WebhookSubscription
    outcome: Outcome
    secret: str | None
    """The signing secret, only when this call created the subscription."""


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What a dispatcher taking a subscription over needs besides its record."""

    attempts: dict[str, int]
    """eventId -> failed attempts so far, for events after ``position``."""
    done: set[int]
    """Positions after ``position`` already delivered."""
    redrive: int
    """Dead letters queued for redelivery."""


class WebhookStore:
    """Webhook subscription records in Redis. Safe to share between tasks."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._create = load_script(redis, "wh_create")
        self._delete = load_script(redis, "wh_delete")
        self._update = load_script(redis, "wh_update")
        self._redrive = load_script(redis, "wh_redrive")
        self._progress = load_script(redis, "wh_progress")
        self._fail = load_script(redis, "wh_fail")
        self._dead = load_script(redis, "wh_dead")

    # -- the API's side ------------------------------------------------------------------------

    async def create(
        self,
        store: str,
        config: WebhookConfig,
        *,
        sub_id: str | None = None,
        position: StartPosition = "latest",
        secret: str | None = None,
        upsert: bool = False,
    ) -> Created:
        """Create a subscription, or return the existing one with the same filter, URL and
        headers (``existing``). With ``upsert`` (config files) an existing ``sub_id`` is
        converged to ``config`` (``updated`` or ``unchanged``), keeping its progress.

        Raises StoreNotFound, or InvalidSubscriptionConfig when ``sub_id`` is taken by a
        subscription with another config (or, upserting, ``config`` duplicates another id).
        """
        k = _keys(store)
        sub_id = sub_id or "sub_" + uuid.uuid4().hex
        generated = new_secret()
        reply = await call(
            self._create(
                keys=[k.meta, k.owner, k.index, k.fingerprints, k.record(sub_id)],
                args=[
                    "upsert" if upsert else "create",
                    sub_id,
                    config.fingerprint(),
                    codec.dumps_str(config.wire()),
                    secret or "",
                    generated,
                    now_iso(),
                    int(time.time() * 1000),
                    str(position),
                    k.record_prefix,
                    *WebhookKeys.SUFFIXES,
                ],
            )
        )
        kind = reply[0]
        if kind == "nostore":
            raise StoreNotFound(store)
        if kind == "taken":
            raise InvalidSubscriptionConfig(
                [
                    {
                        "field": "id",
                        "message": f"subscription '{reply[1]}' already exists with "
                        + ("this filter, URL and headers" if upsert else "another config"),
                    }
                ]
            )
        sub = await self.get(store, reply[1])
        shown = (secret or generated) if kind == "created" else None
        return Created(sub, kind, shown)

    async def get(self, store: str, sub_id: str) -> WebhookSubscription:
        """Raises StoreNotFound or SubscriptionNotFound."""
        k = _keys(store)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.meta, "uid")
            pipe.get(k.owner)
            pipe.hgetall(k.record(sub_id))
            pipe.zcard(k.dead(sub_id))
            uid, owner, record, dead = await call(pipe.execute())
        if uid is None:
            raise StoreNotFound(store)
        if owner != uid or not record or "config" not in record:
            raise SubscriptionNotFound(store, sub_id)
        return WebhookSubscription.from_record(store, record, int(dead))

    async def subscriptions(self, store: str) -> list[WebhookSubscription]:
        """The store's subscriptions in the order they were created. Raises StoreNotFound."""
        k = _keys(store)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.meta, "uid")
            pipe.get(k.owner)
            pipe.zrange(k.index, 0, -1)
            uid, owner, ids = await call(pipe.execute())
        if uid is None:
            raise StoreNotFound(store)
        if owner != uid or not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for sub_id in ids:
                pipe.hgetall(k.record(sub_id))
                pipe.zcard(k.dead(sub_id))
            replies = await call(pipe.execute())
        return [
            WebhookSubscription.from_record(store, record, int(dead))
            for record, dead in zip(replies[::2], replies[1::2], strict=True)
            if record and "config" in record
        ]

    async def delete(self, store: str, sub_id: str | None) -> int:
        """Delete one subscription (or all, ``sub_id=None``) with its progress and dead
        letters. Raises StoreNotFound, or SubscriptionNotFound for a missing ``sub_id``."""
        k = _keys(store)
        n = await call(
            self._delete(
                keys=[k.meta, k.owner, k.index, k.fingerprints],
                args=[sub_id or "", k.record_prefix, *WebhookKeys.SUFFIXES],
            )
        )
        if n < 0:
            raise StoreNotFound(store)
        if sub_id is not None and n == 0:
            raise SubscriptionNotFound(store, sub_id)
        return int(n)

    async def set_status(
        self, store: str, sub_id: str, status: Status, reason: str | None = None
    ) -> WebhookSubscription:
        """Pause (``paused``) or resume (``active``, which also ends the failure streak)."""
        sub = await self.get(store, sub_id)
        fields = ["status", status, "statusReason", reason or "", "statusChangedAt", now_iso()]
        if status == "active":
            fields += ["failingSince", ""]
        k = _keys(store)
        if not await call(self._update(keys=[k.record(sub_id)], args=fields)):
            raise SubscriptionNotFound(store, sub.id)
        return await self.get(store, sub_id)

    async def dead_letters(
        self, store: str, sub_id: str, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[str], int]:
        """Dead-letter records (JSON text, oldest event first) and how many there are."""
        await self.get(store, sub_id)
        k = _keys(store)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrange(k.dead(sub_id), offset, offset + limit - 1)
            pipe.zcard(k.dead(sub_id))
            ids, total = await call(pipe.execute())
        if not ids:
            return [], int(total)
        texts = await call(self._redis.hmget(k.letters(sub_id), ids))
        return [t for t in texts if t is not None], int(total)

    async def redrive(self, store: str, sub_id: str, event_id: str | None = None) -> int:
        """Queue dead letters (all, or the one of ``event_id``) for redelivery; how many."""
        await self.get(store, sub_id)
        k = _keys(store)
        moved = await call(
            self._redrive(
                keys=[k.record(sub_id), k.dead(sub_id), k.redrive(sub_id)],
                args=[event_id or ""],
            )
        )
        if moved < 0:
            raise SubscriptionNotFound(store, sub_id)
        return int(moved)

    # -- the dispatcher's side -----------------------------------------------------------------

    async def all_refs(self) -> list[tuple[str, str]]:
        """(store, id) of every subscription of every store."""
        stores = sorted(await call(self._redis.smembers(STORE_REGISTRY)))
        stores = [s for s in stores if valid_store_name(s)]
        if not stores:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for store in stores:
                k = WebhookKeys(store)
                pipe.hget(k.meta, "uid")
                pipe.get(k.owner)
                pipe.zrange(k.index, 0, -1)
            replies = await call(pipe.execute())
        refs: list[tuple[str, str]] = []
        for i, store in enumerate(stores):
            uid, owner, ids = replies[3 * i : 3 * i + 3]
            if uid is not None and owner == uid:
                refs.extend((store, sub_id) for sub_id in ids)
        return refs

    async def revisions(self, refs: Sequence[tuple[str, str]]) -> list[int | None]:
        """Each subscription's ``rev`` (None: deleted)."""
        if not refs:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for store, sub_id in refs:
                pipe.hget(WebhookKeys(store).record(sub_id), "rev")
            replies = await call(pipe.execute())
        return [None if r is None else int(r) for r in replies]

    async def heads(self, stores: Sequence[str]) -> dict[str, int]:
        """Each store's head position (missing stores left out)."""
        if not stores:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for store in stores:
                pipe.hget(WebhookKeys(store).meta, "head")
            replies = await call(pipe.execute())
        return {s: int(h) for s, h in zip(stores, replies, strict=True) if h is not None}

    async def load(
        self, store: str, sub_id: str
    ) -> tuple[WebhookSubscription, DeliveryState] | None:
        """A subscription with the state a dispatcher resumes from; None if it is gone."""
        k = WebhookKeys(store)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.record(sub_id))
            pipe.hgetall(k.attempts(sub_id))
            pipe.zrange(k.done(sub_id), 0, -1)
            pipe.zcard(k.redrive(sub_id))
            record, attempts, done, redrive = await call(pipe.execute())
        if not record or "config" not in record:
            return None
        sub = WebhookSubscription.from_record(store, record)
        counts: dict[str, int] = {}
        for event_id, value in attempts.items():
            position, _, failed = value.partition("|")
            if int(position) > sub.position:
                counts[event_id] = int(failed)
        done_after = {int(p) for p in done if int(p) > sub.position}
        return sub, DeliveryState(counts, done_after, int(redrive))

    async def next_redrive(self, store: str, sub_id: str) -> tuple[str, int, str] | None:
        """The oldest dead letter queued for redelivery: (eventId, globalPosition, record)."""
        k = WebhookKeys(store)
        head = await call(self._redis.zrange(k.redrive(sub_id), 0, 0, withscores=True))
        if not head:
            return None
        event_id, score = head[0]
        record = await call(self._redis.hget(k.letters(sub_id), event_id))
        return event_id, int(score), record or ""

    async def progress(
        self,
        store: str,
        sub_id: str,
        token: str,
        *,
        position: int,
        succeeded: bool,
        done: Sequence[int] = (),
        finished: Sequence[str] = (),
        redriven: Sequence[str] = (),
    ) -> str:
        """Save progress, fenced by the lease: ``ok``, ``lost`` or ``gone``."""
        k = WebhookKeys(store)
        args: list[Any] = [token, position, "1" if succeeded else "0", now_iso()]
        for values in (done, finished, redriven):
            args.append(len(values))
            args.extend(values)
        return str(
            await call(
                self._progress(
                    keys=[
                        k.record(sub_id),
                        k.lease(sub_id),
                        k.attempts(sub_id),
                        k.done(sub_id),
                        k.redrive(sub_id),
                        k.letters(sub_id),
                    ],
                    args=args,
                )
            )
        )

    async def failed(
        self,
        store: str,
        sub_id: str,
        token: str,
        *,
        event_id: str,
        position: int | None,
        attempts: int,
        error: str,
        auto_pause_ms: int,
    ) -> str:
        """Record a failed attempt (``position`` None: a redrive, whose count is not kept):
        ``ok``, ``paused`` (auto-paused now), ``lost`` or ``gone``."""
        k = WebhookKeys(store)
        now_ms = int(time.time() * 1000)
        reason = f"endpoint failing for {auto_pause_ms / 1000:g} s; last error: {error}"
        return str(
            await call(
                self._fail(
                    keys=[k.record(sub_id), k.lease(sub_id), k.attempts(sub_id)],
                    args=[
                        token,
                        event_id,
                        "" if position is None else f"{position}|{attempts}",
                        error,
                        now_iso(),
                        now_ms,
                        auto_pause_ms,
                        reason,
                    ],
                )
            )
        )

    async def dead_letter(
        self,
        store: str,
        sub_id: str,
        token: str,
        *,
        event_id: str,
        position: int,
        stream_id: str,
        event_json: str,
        attempts: int,
        error: str,
        limit: int,
    ) -> tuple[str, int]:
        """Move an event to the dead-letter list: (``ok``/``lost``/``gone``, dropped)."""
        k = WebhookKeys(store)
        record = codec.json_object(
            {
                "eventId": event_id,
                "globalPosition": position,
                "streamId": stream_id,
                "attempts": attempts,
                "lastError": error,
                "failedAt": now_iso(),
            },
            event=event_json,
        )
        status, dropped = await call(
            self._dead(
                keys=[
                    k.record(sub_id),
                    k.lease(sub_id),
                    k.attempts(sub_id),
                    k.dead(sub_id),
                    k.redrive(sub_id),
                    k.letters(sub_id),
                ],
                args=[token, event_id, position, record, limit],
            )
        )
        return str(status), int(dropped)


def _keys(store: str) -> WebhookKeys:
    if not valid_store_name(store):
        raise StoreNotFound(store)
    return WebhookKeys(store)
