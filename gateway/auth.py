"""Who may do what: the one seam every route and WebSocket goes through.

Credentials: an API key (``X-API-Key``, ``Authorization: Bearer``, ``?apiKey=``) checked against
the hashed keys in Redis (or the bootstrap admin key from the environment or a mounted secret
file), or, on WebSockets, a short-lived token (``?token=`` / ``?authToken=``). With auth disabled
(the embedded dev mode's default) everyone may do everything.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from starlette.requests import HTTPConnection

from broker import ApiKey, Filter, KeyStore, hash_secret

from .errors import ApiError
from .settings import Settings
from .tokens import TokenError, TokenSigner

CACHE_SECONDS = 1.0
"""A key looked up in Redis is trusted this long on this pod: revocation takes at most this
(plus the WebSocket watchdog's second) to reach every pod."""
CACHE_SIZE = 10_000


class Permission(StrEnum):
    READ = "read:events"
    WRITE = "write:events"
    CONNECT = "connect:websockets"
    MANAGE_SUBSCRIPTIONS = "manage:subscriptions"
    MANAGE_STORES = "manage:event_stores"
    ALL = "*"


PERMISSIONS = frozenset(p.value for p in Permission)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    permissions: frozenset[str]
    stores: frozenset[str] | None = None
    """None: every store."""
    key_id: str | None = None
    """The stored API key behind this principal (None: anonymous or the bootstrap key)."""
    expires_at: float | None = None
    narrowing: Filter | None = None
    """A token's limit on what may be subscribed to."""
    via_token: bool = False

    def may(self, permission: Permission) -> bool:
        return Permission.ALL in self.permissions or permission in self.permissions

    def may_use(self, store: str) -> bool:
        return self.stores is None or store in self.stores

    def may_create_stores(self) -> bool:
        """Whether using a missing store may create it (``DELTAGATE_AUTO_CREATE_STORES``): only
        with permission to write or to manage stores, never with a read-only key or a token."""
        return self.may(Permission.WRITE) or self.may(Permission.MANAGE_STORES)


ANONYMOUS = Principal("anonymous (auth disabled)", frozenset({Permission.ALL}))
ADMIN = Principal("bootstrap admin key", frozenset({Permission.ALL}), key_id=None)


API_KEY_PARAM = "apiKey"
TOKEN_PARAMS = ("token", "authToken")
"""The query parameters a browser token comes in (the first given counts)."""
"""The query parameter that may carry an API key (where a header cannot be set)."""


def presented_key(conn: HTTPConnection) -> str | None:
    """The API key a request carries: ``X-API-Key``, ``Authorization: Bearer``, ``?apiKey=``."""
    key = conn.headers.get("x-api-key")
    if key:
        return key
    authorization = conn.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.query_params.get(API_KEY_PARAM) or None


def presented_token(conn: HTTPConnection) -> str | None:
    return next((t for t in map(conn.query_params.get, TOKEN_PARAMS) if t), None)


def _principal_of(key: ApiKey) -> Principal:
    return Principal(
        name=key.name,
        permissions=frozenset(key.permissions),
        stores=frozenset(key.stores) if key.stores is not None else None,
        key_id=key.id,
        expires_at=key.expires_at,
    )


class Authenticator:
    def __init__(self, settings: Settings, keys: KeyStore, metrics: Any = None) -> None:
        self.enabled = settings.auth_enabled
        self.keys = keys
        self.tokens = TokenSigner(
            settings.token_secret.get_secret_value() if settings.token_secret else None
        )
        self._metrics = metrics
        admin = settings.admin_secret
        self._admin_hash = hash_secret(admin) if admin else None
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()

    def _refuse(self, reason: str, message: str) -> ApiError:
        if self._metrics is not None:
            self._metrics.auth_failures.labels(reason).inc()
        return ApiError("UNAUTHORIZED", message)

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        """The principal behind a request's API key. Raises 401."""
        if not self.enabled:
            return ANONYMOUS
        key = presented_key(conn)
        if key is None:
            raise self._refuse(
                "missing",
                "an API key is required (X-API-Key header, Authorization: Bearer, or ?apiKey=)",
            )
        principal = await self._lookup(key)
        if principal is None:
            raise self._refuse("invalid", "the API key is not valid (unknown, revoked or expired)")
        return principal

    async def authenticate_ws(self, conn: HTTPConnection, store: str) -> Principal:
        """A WebSocket's principal: a token bound to ``store``, or an API key. Raises 401/403."""
        if not self.enabled:
            return ANONYMOUS
        token = presented_token(conn)
        if token is None:
            return await self.authenticate(conn)
        return await self.verify_token(token, store)

    async def verify_token(self, token: str, store: str) -> Principal:
        """The principal behind a browser token for ``store`` (at connect, or a ``refresh`` on
        an open socket). Raises 401/403."""
        try:
            grant = self.tokens.verify(token, store)
        except TokenError as exc:
            if exc.code == "FORBIDDEN":
                raise ApiError("FORBIDDEN", exc.message) from None
            raise self._refuse(exc.code.lower(), exc.message) from None
        if grant.key_id != "admin" and not await self.keys.alive([grant.key_id]):
            raise self._refuse(
                "revoked", "the API key that issued this token was revoked or has expired"
            )
        narrowing = None
        if grant.patterns is not None or grant.stream_id is not None or grant.content:
            contents = (grant.content,) if grant.content else ()
            narrowing = Filter(grant.patterns or ("*",), grant.stream_id, contents)
        return Principal(
            name=f"token of key {grant.key_id}",
            permissions=frozenset({Permission.READ, Permission.CONNECT}),
            stores=frozenset({store}),
            key_id=None if grant.key_id == "admin" else grant.key_id,
            expires_at=grant.expires_at,
            narrowing=narrowing,
            via_token=True,
        )

    async def _lookup(self, secret: str) -> Principal | None:
        digest = hash_secret(secret)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return ADMIN
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        key = await self.keys.lookup(secret)
        principal = _principal_of(key) if key is not None else None
        self._cache[digest] = (now + CACHE_SECONDS, principal)
        self._cache.move_to_end(digest)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal


def check(principal: Principal, permission: Permission, store: str | None = None) -> None:
    if not principal.may(permission):
        raise ApiError("FORBIDDEN", f"this key lacks the '{permission}' permission")
    if store is not None and not principal.may_use(store):
        raise ApiError("FORBIDDEN", f"this key may not use event store '{store}'")


async def require(
    conn: HTTPConnection, permission: Permission, store: str | None = None
) -> Principal:
    """The caller's principal, if it holds ``permission`` (on ``store``); else 401/403."""
    principal = await conn.app.state.runtime.auth.authenticate(conn)
    check(principal, permission, store)
    return principal
