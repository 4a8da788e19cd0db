"""Short-lived WebSocket tokens for browsers: JWTs (PyJWT, HS256) bound to one store, with an
expiry and an optional narrowing to patterns and a stream.

Secrets come from ``DELTAGATE_TOKEN_SECRET`` (comma-separated: the first signs, all verify, so a
secret can be rotated without logging anyone out).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass

import jwt

from broker import Content, InvalidFilter

log = logging.getLogger("deltagate.auth")

AUDIENCE = "deltagate-ws"
DEFAULT_TTL = 300
MAX_TTL = 3600


class TokenError(Exception):
    """The token cannot be used: ``code`` says whether a fresh token would help."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token allows."""

    key_id: str
    store: str
    patterns: tuple[str, ...] | None
    stream_id: str | None
    expires_at: float
    content: Content | None = None
    """Content conditions every subscription made with the token is held to."""


class TokenSigner:
    def __init__(self, secrets_csv: str | None) -> None:
        keys = [s.strip() for s in (secrets_csv or "").split(",") if s.strip()]
        if not keys:
            log.warning(
                "DELTAGATE_TOKEN_SECRET is not set: browser tokens are signed with a "
                "random secret and only valid on this pod"
            )
            keys = [secrets.token_urlsafe(32)]
        if any(len(k.encode()) < 32 for k in keys):
            log.warning("a DELTAGATE_TOKEN_SECRET is shorter than 32 bytes; use longer secrets")
        self._keys = keys

    def mint(
        self,
        *,
        key_id: str,
        store: str,
        ttl: int = DEFAULT_TTL,
        patterns: list[str] | None = None,
        stream_id: str | None = None,
        content: Content | None = None,
    ) -> tuple[str, float]:
        now = int(time.time())
        expires = now + ttl
        claims: dict[str, object] = {
            "sub": key_id,
            "aud": AUDIENCE,
            "store": store,
            "iat": now,
            "exp": expires,
        }
        if patterns:
            claims["flt"] = patterns
        if stream_id is not None:
            claims["sid"] = stream_id
        if content is not None and content.match_wire is not None:
            claims["mch"] = content.match_wire
        if content is not None and content.query is not None:
            claims["qry"] = content.query.wire
        return jwt.encode(claims, self._keys[0], algorithm="HS256"), float(expires)

    def verify(self, token: str, store: str) -> Grant:
        claims = None
        for key in self._keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["HS256"],
                    audience=AUDIENCE,
                    options={"require": ["exp", "sub", "store", "aud"]},
                )
                break
            except jwt.ExpiredSignatureError:
                raise TokenError(
                    "TOKEN_EXPIRED", "token expired: fetch a new token and reconnect"
                ) from None
            except jwt.InvalidSignatureError:
                continue  # maybe signed with an older secret
            except jwt.InvalidTokenError:
                raise TokenError("INVALID_TOKEN", "token is malformed or invalid") from None
        if claims is None:
            raise TokenError("INVALID_TOKEN", "token signature is not valid")
        if claims["store"] != store:
            raise TokenError("FORBIDDEN", f"token is for event store '{claims['store']}'")
        flt = claims.get("flt")
        content = None
        if claims.get("mch") is not None or claims.get("qry") is not None:
            try:
                content = Content.parse(claims.get("mch"), claims.get("qry"))
            except InvalidFilter:
                raise TokenError("INVALID_TOKEN", "token holds an invalid filter") from None
        return Grant(
            key_id=str(claims["sub"]),
            store=store,
            patterns=tuple(flt) if isinstance(flt, list) and flt else None,
            stream_id=claims.get("sid"),
            expires_at=float(claims["exp"]),
            content=content,
        )
