"""``{"action": "refresh", "token"}`` (contract section 9): new credentials for an open
connection, its subscriptions kept.

A refresh may renew, never widen. The new token must be for the connection's store (the
token's own check), issued by the same API key (whose connection quota and revocation the
connection answers to), and allow nothing the connection's current credentials do not: its
narrowing (patterns, stream, content limits) must lie within the current one. It must also
cover every subscription the connection holds, since those stay. Anything else is refused with
an ``error`` and the old credentials stay, with their expiry: an expired token's connection is
closed 4001 once ``DELTAGATE_TOKEN_EXPIRY_GRACE`` has passed after it (gateway/ws/sessions.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from broker import BrokerError, Filter

from ..errors import ApiError
from . import protocol

if TYPE_CHECKING:
    from ..auth import Authenticator, Principal


def _within(new: Filter | None, old: Filter | None) -> bool:
    """Whether a narrowing ``new`` allows nothing that ``old`` does not (None: everything): the
    same or a narrower one (fewer patterns or a stream, a stricter ``match`` or ``query``)."""
    if old is None:
        return True
    if new is None:
        return old.covers(EVERYTHING) and not old.contents  # (``*``: the same as none)
    return old.covers(new) and all(limit.implied_by(new.contents) for limit in old.contents)


def _holds(new: Filter | None, subscriptions: Iterable[Filter]) -> bool:
    """Whether every subscription stays inside the narrowing ``new``."""
    if new is None:
        return True
    return all(
        new.covers(flt) and all(limit.implied_by(flt.contents) for limit in new.contents)
        for flt in subscriptions
    )


EVERYTHING = Filter(("*",))


def expires_wire(expires_at: float | None) -> str | None:
    if expires_at is None:
        return None
    return datetime.fromtimestamp(expires_at, UTC).isoformat().replace("+00:00", "Z")


async def renewed(
    auth: Authenticator,
    store: str,
    current: Principal,
    token: str,
    subscriptions: Iterable[Filter],
) -> Principal:
    """The connection's new principal. Raises ``ProtocolError`` (UNAUTHORIZED, FORBIDDEN, or
    UNAVAILABLE when the key's liveness cannot be checked now)."""
    if not auth.enabled:
        return current  # nothing to renew: the connection needs no credentials
    try:
        new = await auth.verify_token(token, store)
    except (ApiError, BrokerError) as exc:  # BrokerError: Redis unavailable, try again
        raise protocol.ProtocolError(exc.code, exc.message) from None
    if new.key_id != current.key_id:
        raise protocol.ProtocolError(
            "FORBIDDEN", "the token was issued by another API key than the connection's"
        )
    if not _within(new.narrowing, current.narrowing):
        raise protocol.ProtocolError(
            "FORBIDDEN", "the token would widen what this connection may see"
        )
    if not _holds(new.narrowing, subscriptions):
        raise protocol.ProtocolError(
            "FORBIDDEN", "the token does not allow this connection's subscriptions"
        )
    return new
