"""API keys, stored in Redis so every pod sees a new or revoked key at once.

Only a SHA-256 of each secret is stored (the secrets are 32 random bytes, so a plain hash is as
good as a slow one and costs nothing per request). A key is ``dg_`` + 43 URL-safe characters; its
id is separate and is what listings, logs and revocation use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import codec
from .keys import API_KEY_BY_HASH, API_KEYS, API_KEYS_LAST_USED
from .redis import call

KEY_PREFIX = "dg_"
MAX_KEY_TTL_SECONDS = 36500 * 86400
"""The longest lifetime a key may be given (100 years): its expiry stays a date every reader can
show (``datetime`` ends at the year 9999)."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        moment = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        # Past datetime's range (a key stored before lifetimes were bounded): the range's end
        # (or start) says as much, where failing would fail the whole listing.
        moment = (datetime.max if ts > 0 else datetime.min).replace(tzinfo=UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    permissions: tuple[str, ...]
    stores: tuple[str, ...] | None
    created_at: float
    expires_at: float | None
    secret_hash: str
    last_used_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    def public(self) -> dict[str, Any]:
        """What listings show: never the secret or its hash."""
        return {
            "id": self.id,
            "name": self.name,
            "permissions": list(self.permissions),
            "stores": list(self.stores) if self.stores is not None else None,
            "createdAt": _iso(self.created_at),
            "lastUsedAt": _iso(self.last_used_at),
            "expiresAt": _iso(self.expires_at),
        }

    def encode(self) -> str:
        return codec.dumps_str(
            {
                "id": self.id,
                "name": self.name,
                "permissions": list(self.permissions),
                "stores": list(self.stores) if self.stores is not None else None,
                "createdAt": self.created_at,
                "expiresAt": self.expires_at,
                "secretHash": self.secret_hash,
            }
        )

    @classmethod
    def decode(cls, raw: str, last_used: str | None = None) -> ApiKey:
        v = codec.loads(raw)
        return cls(
            id=v["id"],
            name=v["name"],
            permissions=tuple(v["permissions"]),
            stores=tuple(v["stores"]) if v.get("stores") is not None else None,
            created_at=v["createdAt"],
            expires_at=v.get("expiresAt"),
            secret_hash=v["secretHash"],
            last_used_at=float(last_used) if last_used else None,
        )


class KeyStore:
    LAST_USED_EVERY = 60.0
    """Seconds between writes of a key's lastUsedAt (a write per request would be waste)."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._last_used_written: dict[str, float] = {}

    async def create(
        self,
        name: str,
        permissions: list[str],
        stores: list[str] | None = None,
        ttl_seconds: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once; only its hash is kept). A lifetime above
        ``MAX_KEY_TTL_SECONDS`` is a ValueError, nothing stored."""
        if ttl_seconds is not None and not 0 < ttl_seconds <= MAX_KEY_TTL_SECONDS:
            raise ValueError(f"a key's lifetime is 1 to {MAX_KEY_TTL_SECONDS} seconds")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        key = ApiKey(
            id=secrets.token_hex(6),
            name=name,
            permissions=tuple(dict.fromkeys(permissions)),
            stores=tuple(dict.fromkeys(stores)) if stores else None,
            created_at=now,
            expires_at=None if ttl_seconds is None else now + ttl_seconds,
            secret_hash=hash_secret(secret),
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(API_KEYS, key.id, key.encode())
            pipe.hset(API_KEY_BY_HASH, key.secret_hash, key.id)
            await call(pipe.execute())
        return key, secret

    async def list(self) -> list[ApiKey]:
        records = await call(self._redis.hgetall(API_KEYS))
        used = await call(self._redis.hgetall(API_KEYS_LAST_USED))
        keys = [ApiKey.decode(raw, used.get(kid)) for kid, raw in records.items()]
        return sorted(keys, key=lambda k: k.created_at)

    async def revoke(self, key_id: str) -> bool:
        raw = await call(self._redis.hget(API_KEYS, key_id))
        if raw is None:
            return False
        key = ApiKey.decode(raw)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(API_KEYS, key_id)
            pipe.hdel(API_KEY_BY_HASH, key.secret_hash)
            pipe.hdel(API_KEYS_LAST_USED, key_id)
            await call(pipe.execute())
        return True

    async def lookup(self, secret: str) -> ApiKey | None:
        """The live (not revoked, not expired) key with this secret, if any."""
        digest = hash_secret(secret)
        key_id = await call(self._redis.hget(API_KEY_BY_HASH, digest))
        if key_id is None:
            return None
        raw = await call(self._redis.hget(API_KEYS, key_id))
        if raw is None:
            return None
        key = ApiKey.decode(raw)
        if not hmac.compare_digest(key.secret_hash, digest) or key.expired():
            return None
        await self._touch(key.id)
        return key

    async def alive(self, key_ids: Sequence[str]) -> set[str]:
        """Which of these key ids still exist and have not expired (one round trip)."""
        if not key_ids:
            return set()
        raws = await call(self._redis.hmget(API_KEYS, key_ids))
        now = time.time()
        return {
            kid
            for kid, raw in zip(key_ids, raws, strict=True)
            if raw is not None and not ApiKey.decode(raw).expired(now)
        }

    async def _touch(self, key_id: str) -> None:
        now = time.time()
        if now - self._last_used_written.get(key_id, 0.0) < self.LAST_USED_EVERY:
            return
        self._last_used_written[key_id] = now
        await call(self._redis.hset(API_KEYS_LAST_USED, key_id, str(now)))
