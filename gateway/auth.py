"""Who may do what: the one seam every route and WebSocket action goes through.

Today: with auth disabled (the embedded dev mode's default) everyone may do everything; with auth
enabled the bootstrap admin key (``DELTAGATE_ADMIN_KEY`` or a mounted secret file) is the only
credential. Stored API keys and browser tokens plug in behind ``Authenticator.authenticate``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum

from starlette.requests import HTTPConnection

from .errors import ApiError
from .settings import Settings


class Permission(StrEnum):
    READ = "read:events"
    WRITE = "write:events"
    CONNECT = "connect:websockets"
    MANAGE_SUBSCRIPTIONS = "manage:subscriptions"
    MANAGE_STORES = "manage:event_stores"
    ALL = "*"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    permissions: frozenset[str]
    stores: frozenset[str] | None = None
    """None: every store."""

    def may(self, permission: Permission) -> bool:
        return Permission.ALL in self.permissions or permission in self.permissions

    def may_use(self, store: str) -> bool:
        return self.stores is None or store in self.stores


ANONYMOUS = Principal("anonymous (auth disabled)", frozenset({Permission.ALL}))
ADMIN = Principal("bootstrap admin key", frozenset({Permission.ALL}))


def presented_key(conn: HTTPConnection) -> str | None:
    """The credential a request carries: ``X-API-Key``, ``Authorization: Bearer``, ``?apiKey=``."""
    key = conn.headers.get("x-api-key")
    if key:
        return key
    authorization = conn.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.query_params.get("apiKey") or None


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth_enabled
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        if admin is None and settings.admin_key_file is not None:
            admin = settings.admin_key_file.read_text().strip() or None
        self._admin = admin.encode() if admin else None

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        key = presented_key(conn)
        if key is None:
            raise ApiError(
                "UNAUTHORIZED",
                "an API key is required (X-API-Key header, Authorization: Bearer, or ?apiKey=)",
            )
        if self._admin is not None and hmac.compare_digest(key.encode(), self._admin):
            return ADMIN
        raise ApiError("UNAUTHORIZED", "the API key is not valid")


async def require(
    conn: HTTPConnection, permission: Permission, store: str | None = None
) -> Principal:
    """The caller's principal, if it holds ``permission`` (on ``store``); else 401/403."""
    principal = await conn.app.state.runtime.auth.authenticate(conn)
    if not principal.may(permission):
        raise ApiError("FORBIDDEN", f"this key lacks the '{permission}' permission")
    if store is not None and not principal.may_use(store):
        raise ApiError("FORBIDDEN", f"this key may not use event store '{store}'")
    return principal
