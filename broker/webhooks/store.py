"""Webhook subscriptions as the API manages them: create (with the duplicate rule and config-file
upserts), get, list, pause and resume, dead letters and their redrive, delete. The dispatcher's
side of the same records is ``progress.ProgressStore``; the layout is in ``records``."""

from __future__ import annotations

import time
import uuid
from typing import Any

from .. import codec
from ..errors import InvalidSubscriptionConfig, StoreNotFound, SubscriptionNotFound
from ..keys import WebhookKeys, valid_store_name
from ..reader import LogReader
from ..redis import call, load_script
from ..types import StartPosition, TimeStart, now_iso
from .config import WebhookConfig
from .records import Created, Status, WebhookSubscription
from .signing import new_secret


class WebhookStore:
    """Webhook subscription records in Redis. Safe to share between tasks."""

    def __init__(self, redis: Any, log: LogReader | None = None) -> None:
        """``log`` finds where a time position starts (give the pod's, which knows the
        archive)."""
        self._redis = redis
        self._create = load_script(redis, "wh_create")
        self._delete = load_script(redis, "wh_delete")
        self._update = load_script(redis, "wh_update")
        self._redrive = load_script(redis, "wh_redrive")
        self._resume = load_script(redis, "wh_resume")
        self._log = log or LogReader(redis)

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
        start_time = ""  # (the record's startTime: none)
        if isinstance(position, TimeStart):
            position, start_time = await self._at_time(store, position)
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
                    start_time,
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
            pipe.hgetall(k.record(sub_id))
            pipe.zcard(k.dead(sub_id))
            uid, record, dead = await call(pipe.execute())
        if uid is None:
            raise StoreNotFound(store)
        if not record or "config" not in record:
            raise SubscriptionNotFound(store, sub_id)
        return WebhookSubscription.from_record(store, record, int(dead), uid)

    async def subscriptions(self, store: str) -> list[WebhookSubscription]:
        """The store's subscriptions in the order they were created. Raises StoreNotFound."""
        k = _keys(store)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.meta, "uid")
            pipe.zrange(k.index, 0, -1)
            uid, ids = await call(pipe.execute())
        if uid is None:
            raise StoreNotFound(store)
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for sub_id in ids:
                pipe.hgetall(k.record(sub_id))
                pipe.zcard(k.dead(sub_id))
            replies = await call(pipe.execute())
        return [
            WebhookSubscription.from_record(store, record, int(dead), uid)
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
        """Pause (``paused``) or set another status (``resume`` resumes)."""
        sub = await self.get(store, sub_id)
        fields = ["status", status, "statusReason", reason or "", "statusChangedAt", now_iso()]
        if status == "active":
            fields += ["failingSince", ""]
        k = _keys(store)
        if not await call(self._update(keys=[k.record(sub_id)], args=fields)):
            raise SubscriptionNotFound(store, sub.id)
        return await self.get(store, sub_id)

    async def resume(
        self, store: str, sub_id: str, position: StartPosition | None = None
    ) -> WebhookSubscription:
        """Resume deliveries (ending the failure streak), from ``position`` if given: the first
        event after it (``latest``: after the head; ``earliest``: from the first kept event; a
        time: from the first event created at or after it). Without one, where it left off,
        except after an auto-pause for a rewind (``statusDetails``), which resumes from
        ``earliest`` of the store as it is now. The position is checked against the head in the
        same atomic step that writes it. Raises StoreNotFound, SubscriptionNotFound, or
        InvalidSubscriptionConfig for a position beyond the head."""
        k = _keys(store)
        start_time = ""  # (the record's startTime: none)
        if isinstance(position, TimeStart):
            position, start_time = await self._at_time(store, position)
        reply = await call(
            self._resume(
                keys=[
                    k.meta,
                    k.record(sub_id),
                    k.lease(sub_id),
                    k.attempts(sub_id),
                    k.done(sub_id),
                ],
                args=[now_iso(), "keep" if position is None else str(position), start_time],
            )
        )
        if reply[0] == "nostore":
            raise StoreNotFound(store)
        if reply[0] == "gone":
            raise SubscriptionNotFound(store, sub_id)
        if reply[0] == "ahead":
            raise InvalidSubscriptionConfig(
                [
                    {
                        "field": "position",
                        "message": f"{position} is beyond the store's head ({reply[1]})",
                    }
                ]
            )
        return await self.get(store, sub_id)

    async def _at_time(self, store: str, start: TimeStart) -> tuple[int, str]:
        """A start from a time: the position before the first event created at or after it (the
        time index narrows it to a second, no scan of the log: ``reader.first_at``), the head
        when there is none yet; and the time for the record to keep until the dispatcher read
        an event created at or after it, so that the events appended meanwhile but created
        before it (a time still ahead) are passed over, not delivered (``LogTail.start_time``)."""
        found = await self._log.first_at(store, start.moment)
        return found - 1, start.wire["time"]

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


def _keys(store: str) -> WebhookKeys:
    if not valid_store_name(store):
        raise StoreNotFound(store)
    return WebhookKeys(store)
