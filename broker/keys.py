"""Every Redis key and channel name deltagate uses is built here and nowhere else.

A store's keys all carry the hash tag ``{store}``, so a store lives on one Redis Cluster slot and
its append script can touch all of them atomically. Store names are restricted to ``[a-z0-9_-]``
(see ``valid_store_name``) so they can never contain a brace; stream ids may hold any character
because they only ever appear after the tag, and no key is ever matched with a glob pattern.
"""

from __future__ import annotations

import re

PREFIX = "dg"
STORE_NAME = re.compile(r"^[a-z0-9_-]{3,63}$")

STORE_REGISTRY = f"{PREFIX}:stores"
"""Set of all store names. Deliberately outside any store's slot."""


def valid_store_name(name: str) -> bool:
    return STORE_NAME.fullmatch(name) is not None


class StoreKeys:
    """The keys of one store."""

    __slots__ = (
        "channel",
        "log",
        "meta",
        "name",
        "stream_created",
        "stream_prefix",
        "stream_updated",
        "streams",
        "tag",
    )

    def __init__(self, name: str) -> None:
        if not valid_store_name(name):
            raise ValueError(f"invalid store name {name!r}")
        self.name = name
        self.tag = f"{PREFIX}:{{{name}}}"
        self.meta = f"{self.tag}:meta"  # hash: uid, description, settings, createdAt, head
        self.log = f"{self.tag}:log"  # stream: entry id "<globalPosition>-0", fields s, t, e
        self.streams = f"{self.tag}:streams"  # zset: streamId scored by its first globalPosition
        self.stream_created = f"{self.tag}:screated"  # hash: streamId -> createdAt
        self.stream_updated = f"{self.tag}:supdated"  # hash: streamId -> updatedAt
        self.stream_prefix = f"{self.tag}:s:"  # + streamId: list of the stream's globalPositions
        self.channel = f"{self.tag}:live"  # pub/sub channel announcing appends

    def stream(self, stream_id: str) -> str:
        return self.stream_prefix + stream_id

    def idempotency(self, key: str) -> str:
        return f"{self.tag}:idem:{key}"


# -- API keys and rate limits (deployment-wide, outside any store's slot) ----------------------

API_KEYS = f"{PREFIX}:apikeys"
"""Hash: key id -> key record JSON (hash of the secret, never the secret)."""
API_KEY_BY_HASH = f"{PREFIX}:apikeys:byhash"
"""Hash: sha256 of a secret -> key id."""
API_KEYS_REVOKED = f"{PREFIX}:apikeys:revoked"
"""Channel announcing revocations so every pod closes that key's sockets at once."""


def rate_bucket(key_id: str, kind: str, window: int) -> str:
    return f"{PREFIX}:rate:{kind}:{key_id}:{window}"


def connection_count(key_id: str) -> str:
    return f"{PREFIX}:conns:{key_id}"
