"""One typed settings value, read from ``DELTAGATE_*`` environment variables and CLI flags, and
passed down (``create_app(settings)``); nothing reads the environment at import time."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.connection import parse_url

from broker import (
    MAX_HOT_SECONDS,
    MAX_IDEMPOTENCY_TTL,
    DispatcherOptions,
    LifecycleOptions,
    LogLimits,
    RedisConfig,
    TargetPolicy,
    parse_networks,
    parse_schedule,
)

MiB = 1024 * 1024


def _origin(entry: str) -> str:
    """``entry`` as the Origin header spells it (a trailing ``/`` dropped, scheme and host in
    lower case); ValueError unless it is ``scheme://host[:port]``."""
    text = entry.strip()
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        not parts.scheme
        or not parts.hostname
        or "*" in text
        or port == -1
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            f"{text!r} is not an origin: scheme://host[:port], as a browser sends it "
            "(https://app.example.com), comma-separated"
        )
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


DEFAULT_HOT_SECONDS = 86400.0
"""With an archive, events older than a day leave Redis unless a store says otherwise."""
MAX_SHUTDOWN_SECONDS = 86400.0
"""The longest drain and grace period: a day (their deadlines must stay numbers the event loop
and uvicorn can wait for)."""


class Settings(BaseSettings):
    # allow_inf_nan=False: no float setting takes inf or nan (they passed every bound, then
    # failed where the pod used them: int(inf) in the drain's deadline, a date an infinity ago).
    model_config = SettingsConfigDict(
        env_prefix="DELTAGATE_", extra="ignore", frozen=True, allow_inf_nan=False
    )

    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    metrics_port: int | None = Field(None, ge=1, le=65535)
    """When set, ``/metrics`` is served on this port alone and not on ``port``."""
    redis_url: str | None = None
    """Absent: an embedded in-memory Redis stand-in (fakeredis), single node, dev only."""
    redis_mode: Literal["standalone", "cluster"] = "standalone"
    redis_timeout: float = Field(5.0, gt=0, le=60)
    redis_max_connections: int = Field(200, ge=4)
    append_wait_replicas: int = Field(0, ge=0, le=16)
    """Acknowledge an append only once this many Redis replicas have it (Redis WAIT)."""
    append_wait_timeout_ms: int = Field(500, ge=1, le=60_000)
    """How long an append waits for those replicas before answering 503 (written, retry with
    the same idempotency key to confirm)."""

    auth: Literal["enabled", "disabled"] | None = None
    """Default: enabled with a Redis URL, disabled in the embedded dev mode."""
    admin_key: SecretStr | None = None
    admin_key_file: Path | None = None
    """Read once, with the settings (``admin_secret``): a file that cannot be read, is not UTF-8
    text or holds no key is a settings error, as a missing one is (whoever names a key file
    means a key: an empty one must not start a pod without it)."""
    _file_admin_key: str | None = PrivateAttr(None)
    token_secret: SecretStr | None = None
    allowed_origins: str = ""
    """Comma-separated Origins allowed for WebSocket upgrades and CORS; empty: any."""

    rate_appends_per_second: int = Field(1000, ge=0)
    """Append requests per second per API key, across all pods (0: unlimited)."""
    rate_subscribes_per_second: int = Field(100, ge=0)
    """WebSocket subscribe actions per second per API key, across all pods (0: unlimited)."""
    max_connections_per_key: int = Field(1000, ge=0)
    """Open WebSocket connections and SSE responses per API key, together, across all pods (0:
    unlimited)."""

    auto_create_stores: bool | None = None
    """Create a store on first use. Default: on in the embedded dev mode, off otherwise."""
    config: Path | None = None

    max_event_bytes: int = Field(1 * MiB, ge=1024)
    max_events_per_append: int = Field(1000, ge=1)
    max_body_bytes: int = Field(8 * MiB, ge=1024)
    max_ws_message_bytes: int = Field(64 * 1024, ge=256)
    max_subscriptions_per_connection: int = Field(100, ge=1)
    idempotency_ttl_seconds: int = Field(24 * 3600, ge=1, le=MAX_IDEMPOTENCY_TTL)
    """How long an append's idempotency key is remembered (at most 30 days: see
    ``broker.MAX_IDEMPOTENCY_TTL``)."""

    ws_send_queue: int = Field(1024, ge=16)
    """Frames a connection may have queued before it is demoted to reading from the log."""
    ws_send_queue_bytes: int = Field(256 * 1024, ge=64 * 1024)
    """Bytes a connection may have queued (whichever bound is hit first). With the default
    1,000 connections per key, one key's stalled sockets stay within 256 MiB on their own; the
    pod-wide bound is ``max_queued_bytes``."""
    max_queued_bytes: int = Field(128 * MiB, ge=1 * MiB)
    """Everything this pod has queued to clients (outboxes, transport buffers, replay pages in
    hand): past 3/4 of it the biggest queues are demoted to reading the log, past it the
    biggest connections are closed with 4008."""
    ws_compression: bool = False
    """permessage-deflate. Off: compressing costs CPU per subscriber per message."""
    slow_consumer_timeout: float = Field(30.0, gt=0)
    """A connection whose writes make no progress this long is closed with 4008."""
    sse_heartbeat_seconds: float = Field(15.0, gt=0, le=300)
    """An SSE response with nothing to send for this long gets a comment line (keeps proxies
    from closing an idle stream)."""
    token_expiry_grace: float = Field(30.0, ge=0, le=3600)
    """A connection whose browser token expired is closed with 4001 this long after the expiry
    unless it sent a ``refresh`` with a new token meanwhile."""
    checkpoint_interval: float = Field(5.0, gt=0)
    poll_interval: float = Field(1.0, gt=0, le=60)
    """How often each pod compares its feeds with the stores' heads (repairs lost pub/sub)."""
    drain_seconds: float = Field(10.0, ge=0, le=MAX_SHUTDOWN_SECONDS)
    """SIGTERM spreads the closing of WebSockets over this window."""
    grace_period: float = Field(30.0, gt=0, le=MAX_SHUTDOWN_SECONDS)

    # -- data lifecycle (docs/lifecycle.md) ----------------------------------------------------

    archive_url: str | None = None
    """postgresql://... : events are copied to this PostgreSQL archive before they may leave
    Redis, and read back from it transparently. Absent: no archive (hot retention then deletes)."""
    archive_timeout: float = Field(5.0, gt=0, le=120)
    lifecycle_interval: float = Field(1.0, gt=0, le=3600)
    """Seconds between rounds of retention and archiving when there is nothing to catch up."""
    hot_retention_max_events: int | None = Field(None, ge=1)
    """Default hotRetention.maxEvents for stores that set none."""
    hot_retention_max_age_seconds: float | None = Field(None, ge=1, le=MAX_HOT_SECONDS)
    """Default hotRetention.maxAgeSeconds for stores that set none (bounded as a store's own).
    With an archive and neither default set: one day."""

    # -- the HTTP server (gateway/server.py): what a client reaching a pod directly may hold ----

    max_header_bytes: int = Field(64 * 1024, ge=4096, le=16 * MiB)
    """A request's line and headers; past it: 431 and the connection closed."""
    header_timeout: float = Field(10.0, gt=0, le=300)
    """Seconds to send a request's line and headers, from connecting (or from the next request's
    first byte on a kept-alive connection); then the connection is closed."""
    max_pending_headers: int = Field(256, ge=1)
    """Connections waiting for their headers at once; past it, those waiting longest (at least
    1 s) are closed."""
    limit_concurrency: int = Field(10_000, ge=0)
    """Open connections (WebSockets included) plus requests in flight on one pod; past it new
    requests and WebSockets get 503 (the probes never). 0: no limit."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Any case (``INFO`` too); anything else is refused here, not by ``logging`` at the start."""
    log_json: bool = True

    @field_validator("redis_url", "archive_url", "metrics_port", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        """Read by redis-py's own parser, as the pod's client will read it: refused here, in one
        line, rather than by the client at the pod's start."""
        if value is not None:
            parse_url(value)  # (its ValueError says what is wrong)
            # redis-py takes a path that is no number for no database at all (db 0): a typo
            # would silently use another database.
            path = urlsplit(value).path.strip("/")
            if not value.startswith("unix://") and path and not path.isdigit():
                raise ValueError(f"the database {path!r} is not a number (redis://host:port/DB)")
        return value

    @field_validator("admin_key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _read_admin_key_file(self) -> Settings:
        path = self.admin_key_file
        if path is not None:
            where = f"DELTAGATE_ADMIN_KEY_FILE {path}"
            try:
                key = path.read_bytes().decode("utf-8").strip()
            except OSError as exc:
                raise ValueError(f"{where}: cannot read it: {exc.strerror or exc}") from None
            except UnicodeDecodeError:
                raise ValueError(f"{where}: not UTF-8 text") from None
            if not key:
                raise ValueError(f"{where}: holds no key (empty)")
            self._file_admin_key = key
        return self

    @property
    def admin_secret(self) -> str | None:
        """The bootstrap key: ``DELTAGATE_ADMIN_KEY``, else the key file's."""
        if self.admin_key is not None and self.admin_key.get_secret_value():
            return self.admin_key.get_secret_value()
        return self._file_admin_key

    @field_validator("archive_url")
    @classmethod
    def _postgres(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        if value is not None:
            # The port of each host (libpq's "h1:5432,h2:5433" included): a bad one would
            # otherwise fail in the lifecycle's every run, long after a clean start.
            hosts = urlsplit(value).netloc.rpartition("@")[2]
            for host in hosts.split(","):
                name, colon, port = host.rpartition(":") if not host.endswith("]") else ("", "", "")
                if colon and port and not (port.isdigit() and 1 <= int(port) <= 65535):
                    raise ValueError(f"the port of {name or host!r} is not a number 1 to 65535")
        return value

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def auth_enabled(self) -> bool:
        if self.auth is not None:
            return self.auth == "enabled"
        return not self.embedded

    @property
    def auto_create(self) -> bool:
        return self.embedded if self.auto_create_stores is None else self.auto_create_stores

    @property
    def origins(self) -> list[str]:
        return self.allowed_origins.split(",") if self.allowed_origins else []

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        """Each an origin as a browser sends it (``https://app.example.com``, a port if not the
        scheme's), kept as it spells them: anything else would match no browser, and refuse
        every one in silence."""
        return ",".join(_origin(entry) for entry in value.split(",") if entry.strip())

    @property
    def redis(self) -> RedisConfig:
        return RedisConfig(
            url=self.redis_url,
            mode=self.redis_mode,
            timeout=self.redis_timeout,
            max_connections=self.redis_max_connections,
        )

    @property
    def lifecycle_options(self) -> LifecycleOptions:
        hot_events, hot_seconds = self.hot_retention_max_events, self.hot_retention_max_age_seconds
        if self.archive_url is not None and hot_events is None and hot_seconds is None:
            hot_seconds = DEFAULT_HOT_SECONDS
        return LifecycleOptions(
            interval=self.lifecycle_interval, hot_events=hot_events, hot_seconds=hot_seconds
        )

    @property
    def log_limits(self) -> LogLimits:
        return LogLimits(
            max_event_bytes=self.max_event_bytes, idempotency_ttl=self.idempotency_ttl_seconds
        )

    # -- webhook dispatcher (``deltagate dispatcher``) -------------------------------------------

    dispatcher_port: int = Field(8788, ge=0, le=65535)
    """The dispatcher's status server (/healthz, /readyz, /metrics): never the gateway's port, so a
    dispatcher runs beside a pod on one host."""

    dispatcher_lease_seconds: float = Field(5.0, ge=0.5, le=300)
    """A dispatcher replica's claim on a subscription lasts this long unless renewed: a dead
    replica's subscriptions move to the others after about this long."""
    dispatcher_max_in_flight: int = Field(16, ge=1, le=1000)
    """Webhook requests in flight per subscription (never two of the same stream at once)."""
    dispatcher_window: int = Field(1000, ge=1, le=100_000)
    """Matching events a subscription may run ahead of its saved position (e.g. while one
    stream waits for a retry); bounds memory and what a takeover must skip. Up to 4x as many
    while they hold fewer streams than ``dispatcher_max_in_flight`` and reading finds new ones
    (a log whose streams come in runs)."""
    dispatcher_max_connections: int = Field(100, ge=1, le=10_000)
    """Webhook requests in flight in one dispatcher replica, all subscriptions together."""
    webhook_timeout: float = Field(10.0, gt=0, le=300)
    """Seconds per webhook request, unless a subscription sets its own ``timeout``."""
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,36000"
    """Default delays (seconds, comma-separated) after each failed attempt, each the ceiling of
    a random "full jitter" delay; attempts = entries + 1. A subscription's ``retryPolicy``
    overrides it."""
    webhook_auto_pause_seconds: float = Field(5 * 24 * 3600.0, ge=0, le=3650 * 86400.0)
    """A subscription whose endpoint has failed every attempt for this long is auto-paused
    (0: never; at most ten years, whose milliseconds the scripts still count exactly)."""
    webhook_dead_letter_limit: int = Field(10_000, ge=1)
    """Dead letters kept per subscription; past it the oldest are dropped."""
    webhook_allowed_networks: str = ""
    """Comma-separated CIDRs webhook URLs may reach although they are not public (loopback,
    private, link-local...). Empty: public addresses only, plus loopback in the embedded dev
    mode."""

    embedded_dispatcher: bool = True
    """In the embedded dev mode, deliver webhooks from inside the pod (a separate
    ``deltagate dispatcher`` cannot reach the in-memory Redis). Ignored with a Redis URL."""

    @model_validator(mode="after")
    def _ports_apart(self) -> Settings:
        if self.dispatcher_port and self.dispatcher_port == self.port:
            raise ValueError(
                f"dispatcher_port and port are both {self.port}: a dispatcher and a pod on one "
                "host would collide; give DELTAGATE_DISPATCHER_PORT another port"
            )
        if self.metrics_port is not None and self.metrics_port in (self.port, self.dispatcher_port):
            raise ValueError(
                f"metrics_port {self.metrics_port} is also the pod's or the dispatcher's port; "
                "give DELTAGATE_METRICS_PORT a port of its own"
            )
        return self

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def webhook_targets(self) -> TargetPolicy:
        """Which addresses webhook URLs may name and the dispatcher may connect to."""
        return TargetPolicy.build(self.webhook_allowed_networks, loopback=self.embedded)

    @property
    def dispatcher_options(self) -> DispatcherOptions:
        return DispatcherOptions(
            lease_seconds=self.dispatcher_lease_seconds,
            poll_interval=self.poll_interval,
            max_in_flight=self.dispatcher_max_in_flight,
            window=self.dispatcher_window,
            max_connections=self.dispatcher_max_connections,
            timeout=self.webhook_timeout,
            retry_schedule=parse_schedule(self.webhook_retry_schedule),
            auto_pause_seconds=self.webhook_auto_pause_seconds,
            dead_letter_limit=self.webhook_dead_letter_limit,
            targets=self.webhook_targets,
            drain_seconds=max(1.0, self.grace_period - 5.0),
        )


CLIENT_VARIABLES = frozenset({"DELTAGATE_URL", "DELTAGATE_API_KEY"})
"""Read by the CLI's client commands (where a deployment is, with which key), not by settings."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``DELTAGATE_*`` variables of ``environ`` that no setting reads but one resembles,
    each with that setting: a misspelt one (``DELTAGATE_PROT``) is otherwise ignored in silence.
    Others are left alone (tools and tests have variables of their own under the prefix)."""
    known = {f"DELTAGATE_{name.upper()}" for name in Settings.model_fields} | CLIENT_VARIABLES
    suffixes = [name.removeprefix("DELTAGATE_") for name in known]
    found = []
    for name in sorted(environ):
        if name.startswith("DELTAGATE_") and name not in known:
            # (the names after the prefix: with it, DELTAGATE_JS resembled DELTAGATE_HOST)
            suffix = name.removeprefix("DELTAGATE_")
            close = difflib.get_close_matches(suffix, suffixes, n=1, cutoff=0.7)
            if close:
                found.append(f"{name} (did you mean DELTAGATE_{close[0]}?)")
    return found
