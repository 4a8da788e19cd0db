"""Signing deliveries the Standard Webhooks way: a ``whsec_`` secret per subscription, and the
``webhook-signature`` header ``v1,<base64 HMAC-SHA256>`` over ``id.timestamp.body``. A receiver
checks it as docs/webhooks.md shows (the snippets there are run by the tests)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
BLOCK = 64
"""SHA-256's block size: HMAC pads (or first hashes) its key to it."""


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


class Signer:
    """Signs with one key: HMAC-SHA256 (RFC 2104) with the key's padded blocks hashed once, so a
    signature costs two hash continuations (``hmac.digest`` sets the key up again at every call:
    about twice the CPU, measured on the bench host)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` header: ``v1,`` + base64 HMAC-SHA256 of
        ``id.timestamp.body``."""
        inner = self._inner.copy()
        inner.update(f"{msg_id}.{timestamp}.".encode())
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return "v1," + binascii.b2a_base64(outer.digest(), newline=False).decode()


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header for one message (``Signer`` for many with one key)."""
    return Signer(key)(msg_id, timestamp, body)
