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
ARCHIVE_FORGET = f"{PREFIX}:archive:forget"
"""Uids of deleted stores whose archived events are still to be deleted: the archive did not
answer when they were (``archiver.forget``); the lifecycle deletes them later, on any pod."""
DCB_STREAM = "__dcb__"
"""The reserved stream DCB appends go to: stream endpoints refuse it, and the stream list and the
store's stream count leave it out (DeltaBase: an implementation detail)."""
"""Set of all store names. Deliberately outside any store's slot."""


def valid_store_name(name: str) -> bool:
    return STORE_NAME.fullmatch(name) is not None


class StoreKeys:
    """The keys of one store."""

    __slots__ = (
        "channel",
        "lifecycle_lease",
        "log",
        "meta",
        "name",
        "offsets",
        "stream_created",
        "stream_prefix",
        "stream_updated",
        "streams",
        "tag",
        "tag_prefix",
        "times",
        "type_prefix",
    )

    def __init__(self, name: str) -> None:
        if not valid_store_name(name):
            raise ValueError(f"invalid store name {name!r}")
        self.name = name
        self.tag = f"{PREFIX}:{{{name}}}"
        # hash: uid, description, settings, createdAt, head; tsec (the last second in the time
        # index); low (the lowest position still in Redis, absent: 1), archived (the highest
        # position durably in the archive, absent: 0), oldest (the lowest position kept anywhere,
        # absent: 1). Invariants: docs/lifecycle.md.
        self.meta = f"{self.tag}:meta"
        self.log = f"{self.tag}:log"  # stream: entry id "<globalPosition>-0", fields s, t, p, e
        self.streams = f"{self.tag}:streams"  # zset: streamId scored by its first globalPosition
        self.stream_created = f"{self.tag}:screated"  # hash: streamId -> createdAt
        self.stream_updated = f"{self.tag}:supdated"  # hash: streamId -> updatedAt
        self.stream_prefix = f"{self.tag}:s:"  # + streamId: list of the stream's globalPositions
        # hash: streamId -> how many of its first events retention moved out of the stream's
        # list (its list then starts at that streamPosition)
        self.offsets = f"{self.tag}:soff"
        self.times = f"{self.tag}:times"  # zset: first globalPosition of each second, by epoch ms
        # + type / + tag: lists of the globalPositions of the events of that type / with that tag,
        # ascending (DCB conditions and queries: broker/dcb.py)
        self.type_prefix = f"{self.tag}:x:t:"
        self.tag_prefix = f"{self.tag}:x:g:"
        # string: the pod enforcing this store's retention and archiving (expires)
        self.lifecycle_lease = f"{self.tag}:lifecycle"
        # Pub/sub channel announcing appends. The suffix is the announcement's format version:
        # during a rolling update pods of another version hear nothing of this one's appends
        # (their 1 s head poll repairs from the log) instead of misreading them.
        self.channel = f"{self.tag}:live:3"

    def stream(self, stream_id: str) -> str:
        return self.stream_prefix + stream_id

    def idempotency(self, key: str) -> str:
        return f"{self.tag}:idem:{key}"


# -- API keys and rate limits (deployment-wide, outside any store's slot) ----------------------

API_KEYS = f"{PREFIX}:{{auth}}:keys"
"""Hash: key id -> key record JSON (hash of the secret, never the secret). The ``{auth}`` tag
keeps the key hashes on one cluster slot, so creating or revoking one is a transaction."""
API_KEY_BY_HASH = f"{PREFIX}:{{auth}}:keys:byhash"
"""Hash: sha256 of a secret -> key id."""
API_KEYS_LAST_USED = f"{PREFIX}:{{auth}}:keys:lastused"
"""Hash: key id -> when it was last used (epoch seconds, written at most once a minute)."""


def rate_bucket(key_id: str, kind: str, window: int) -> str:
    return f"{PREFIX}:rate:{kind}:{key_id}:{window}"


def connection_count(key_id: str) -> str:
    return f"{PREFIX}:conns:{key_id}"


# -- webhook subscriptions -------------------------------------------------------------------
# One store's subscriptions live under that store's hash tag, so the scripts that create, fence
# and advance them run in the store's slot (layout: broker/webhooks/records.py). Only the dispatcher
# registry is deployment-wide.

WEBHOOK_DISPATCHERS = f"{PREFIX}:webhooks:dispatchers"
"""Sorted set: dispatcher replica id -> its last heartbeat (epoch ms)."""

SUBSCRIPTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Subscription ids: no ``:`` (a key separator) and nothing a URL path would need to escape."""


def valid_subscription_id(value: str) -> bool:
    return SUBSCRIPTION_ID.fullmatch(value) is not None


class WebhookKeys:
    """The keys of one store's webhook subscriptions."""

    SUFFIXES = ("", ":lease", ":attempts", ":done", ":dlq", ":redrive", ":letters")
    """Every key of one subscription is ``record_prefix + id + suffix``: what deleting one
    removes."""

    __slots__ = ("fingerprints", "index", "meta", "owner", "record_prefix", "store")

    def __init__(self, store: str) -> None:
        keys = StoreKeys(store)
        self.store = keys
        self.meta = keys.meta
        self.owner = f"{keys.tag}:whuid"  # string: uid of the store the subscriptions belong to
        self.index = f"{keys.tag}:whs"  # zset: subscription id scored by creation time (ms)
        self.fingerprints = f"{keys.tag}:whfp"  # hash: sha256(filter, url, headers) -> id
        self.record_prefix = f"{keys.tag}:wh:"

    def record(self, sub_id: str) -> str:
        """Hash: config, secret, status, position (lastProcessedEventGlobalPosition), errors."""
        return self.record_prefix + sub_id

    def lease(self, sub_id: str) -> str:
        """String: the dispatcher replica delivering this subscription, with an expiry."""
        return self.record_prefix + sub_id + ":lease"

    def attempts(self, sub_id: str) -> str:
        """Hash: eventId -> "globalPosition|failed attempts" for events being retried."""
        return self.record_prefix + sub_id + ":attempts"

    def done(self, sub_id: str) -> str:
        """Zset: globalPositions delivered ahead of the saved position (other streams ran on)."""
        return self.record_prefix + sub_id + ":done"

    def dead(self, sub_id: str) -> str:
        """Zset: dead-lettered eventIds scored by globalPosition."""
        return self.record_prefix + sub_id + ":dlq"

    def redrive(self, sub_id: str) -> str:
        """Zset: eventIds queued for redelivery, scored by globalPosition."""
        return self.record_prefix + sub_id + ":redrive"

    def letters(self, sub_id: str) -> str:
        """Hash: eventId -> dead-letter record JSON (for entries in ``dead`` or ``redrive``)."""
        return self.record_prefix + sub_id + ":letters"
