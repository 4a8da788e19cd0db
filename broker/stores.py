"""Store administration: create, list, describe, change settings (``update``), delete.

A store's settings are free-form JSON (DeltaBase keeps what it is given) except for the ones
deltagate acts on, which are checked here: ``retentionPeriodDays``, ``maxStreamSizeBytes`` and
``hotRetention: {maxEvents?, maxAgeSeconds?}`` (enforced by ``broker.lifecycle``).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import codec
from .archive import Archive
from .archiver import forget
from .errors import InvalidSettings, StoreAlreadyExists, StoreNotFound, Unavailable
from .keys import DCB_STREAM, STORE_REGISTRY, StoreKeys
from .reader import LogReader, entry_event, keys_of
from .redis import call, load_script
from .types import StoreInfo, now_iso

MAX_DAYS = 36_500
MAX_HOT_SECONDS = MAX_DAYS * 86400
"""The longest ``hotRetention.maxAgeSeconds`` (a store's, or the deployment's default): 100
years, so that "now minus it" is still a date (``broker.lifecycle`` reads the log from it)."""
UPDATE_ATTEMPTS = 50
MAX_COUNT = 2**53


@dataclass(frozen=True, slots=True)
class Retention:
    """What a store's settings ask of retention. None: no limit of that kind."""

    period_days: float | None = None
    """Events older than this are deleted everywhere (DeltaBase's ``retentionPeriodDays``)."""
    max_bytes: int | None = None
    """The log's events beyond this many bytes of JSON, oldest first, are deleted everywhere
    (DeltaBase's ``maxStreamSizeBytes``, applied to the store's whole log)."""
    hot_events: int | None = None
    """At most this many of the newest events stay in Redis (``hotRetention.maxEvents``)."""
    hot_seconds: float | None = None
    """Events older than this leave Redis (``hotRetention.maxAgeSeconds``)."""

    @classmethod
    def of(cls, settings: dict[str, Any]) -> Retention:
        """From settings already checked by ``check_settings``."""
        hot = settings.get("hotRetention") or {}
        return cls(
            settings.get("retentionPeriodDays"),
            settings.get("maxStreamSizeBytes"),
            hot.get("maxEvents"),
            hot.get("maxAgeSeconds"),
        )


def _number(value: object, *, integer: bool, low: float, high: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if integer and not isinstance(value, int):
        return False
    return low <= value <= high


def merge_patch(target: object, patch: object) -> Any:
    """RFC 7396: ``patch`` applied to ``target`` (objects merge key by key, recursively; a null
    removes its key; anything else replaces)."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def check_settings(settings: object) -> dict[str, Any]:
    """A store's settings, with the ones retention acts on checked; raises InvalidSettings
    listing each bad field (``settings.<name>``)."""
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise InvalidSettings([{"field": "settings", "message": "must be an object"}])
    problems: list[dict[str, str]] = []

    def bad(field: str, message: str) -> None:
        problems.append({"field": f"settings.{field}", "message": message})

    days = settings.get("retentionPeriodDays")
    if days is not None and not (_number(days, integer=False, low=0, high=MAX_DAYS) and days > 0):
        bad("retentionPeriodDays", f"a number of days, more than 0 and at most {MAX_DAYS}")
    size = settings.get("maxStreamSizeBytes")
    if size is not None and not _number(size, integer=True, low=1, high=MAX_COUNT):
        bad("maxStreamSizeBytes", "a whole number of bytes, at least 1")
    hot = settings.get("hotRetention")
    if hot is not None:
        if not isinstance(hot, dict) or not set(hot) <= {"maxEvents", "maxAgeSeconds"}:
            bad("hotRetention", "an object {maxEvents?, maxAgeSeconds?}")
        else:
            events = hot.get("maxEvents")
            if events is not None and not _number(events, integer=True, low=1, high=MAX_COUNT):
                bad("hotRetention.maxEvents", "a whole number, at least 1")
            age = hot.get("maxAgeSeconds")
            if age is not None and not _number(age, integer=False, low=1, high=MAX_HOT_SECONDS):
                bad("hotRetention.maxAgeSeconds", "a number of seconds, at least 1")
    if problems:
        raise InvalidSettings(problems)
    try:
        codec.dumps(settings)  # e.g. nested deeper than the encoder allows
    except codec.JSONEncodeError as exc:
        raise InvalidSettings([{"field": "settings", "message": f"not storable: {exc}"}]) from None
    return settings


OLDEST_TIMES_KEPT = 1024
"""Stores whose oldest archived event's time one ``StoreAdmin`` remembers."""


class StoreAdmin:
    def __init__(self, redis: Any, archive: Archive | None = None) -> None:
        self._redis = redis
        self._archive = archive
        self._reader = LogReader(redis, archive)
        self._create = load_script(redis, "create_store")
        self._update = load_script(redis, "update_store")
        self._delete = load_script(redis, "delete_store")
        self._oldest_times: dict[tuple[str, int], str] = {}
        """(uid, oldest position) -> that event's ``createdAt``, read once from the archive."""

    async def create(
        self, name: str, *, description: str | None = None, settings: dict | None = None
    ) -> StoreInfo:
        k = StoreKeys(name)  # the caller validated the name
        fields = {
            "uid": str(uuid.uuid4()),
            "createdAt": now_iso(),
            "head": "0",
            "settings": codec.dumps_str(check_settings(settings)),
        }
        if description is not None:
            fields["description"] = description
        args = [item for pair in fields.items() for item in pair]
        if not await call(self._create(keys=[k.meta], args=args)):
            raise StoreAlreadyExists(name)
        await self.register(name)
        return await self.get(name)

    async def update(self, name: str, patch: dict[str, Any]) -> StoreInfo:
        """Apply a JSON merge patch (RFC 7396) of ``{description?, settings?}`` to the store: a
        description replaces it (null removes it); settings are merged into the store's, key by
        key and nested objects alike, a null removing its key (``settings: null`` removes them
        all). The merged settings are checked as at create (``check_settings``). Atomic against
        other updates (compare-and-set, retried on a race). Raises StoreNotFound or
        InvalidSettings."""
        k = keys_of(name)
        description = patch.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidSettings([{"field": "description", "message": "must be a string"}])
        op = "keep" if "description" not in patch else ("delete" if description is None else "set")
        for _ in range(UPDATE_ATTEMPTS):
            uid, current = await call(self._redis.hmget(k.meta, "uid", "settings"))
            if uid is None:
                raise StoreNotFound(name)
            current = current or "{}"
            settings = codec.loads(current)
            if "settings" in patch:
                settings = merge_patch(settings, patch["settings"])
            merged = codec.dumps_str(check_settings(settings))
            written = await call(
                self._update(keys=[k.meta], args=[uid, current, merged, op, description or ""])
            )
            if written == 1:
                return await self.get(name)
            if written == -1:
                raise StoreNotFound(name)
        raise Unavailable(f"store '{name}' kept changing under {UPDATE_ATTEMPTS} updates")

    async def register(self, name: str) -> None:
        """Add a store to the listing (the registry lives outside the store's slot)."""
        await call(self._redis.sadd(STORE_REGISTRY, name))

    async def get(self, name: str) -> StoreInfo:
        k = keys_of(name)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.meta)
            pipe.zcard(k.streams)
            pipe.zscore(k.streams, DCB_STREAM)  # (not a stream a client may address: not counted)
            pipe.xrange(k.log, "-", "+", count=1)
            pipe.xrevrange(k.log, "+", "-", count=1)
            meta, streams, dcb, first, last = await call(pipe.execute())
        if not meta or "uid" not in meta:
            raise StoreNotFound(name)
        oldest = int(meta.get("oldest") or 1)
        return StoreInfo(
            name=name,
            description=meta.get("description"),
            settings=codec.loads(meta.get("settings") or "{}"),
            created_at=meta.get("createdAt", ""),
            head_position=int(meta.get("head") or 0),
            total_streams=int(streams) - (dcb is not None),
            uid=meta["uid"],
            low=int(meta.get("low") or 1),
            oldest=oldest,
            archived=int(meta.get("archived") or 0),
            bytes=int(meta.get("bytes") or 0),
            oldest_at=await self._oldest_at(name, meta["uid"], oldest, first),
            newest_at=codec.created_at_text(entry_event(last[0]).json) if last else None,
        )

    async def _oldest_at(self, name: str, uid: str, oldest: int, first: list) -> str | None:
        """``createdAt`` of the oldest event kept: Redis's first entry, unless retention moved the
        oldest ones to the archive (then one read there, remembered for that position). While
        the archive does not answer, unknown (None): a store's info and the store list do not
        need archived events, and do not fail for them."""
        if not first:
            return None
        event = entry_event(first[0])
        if event.global_position <= oldest:
            return codec.created_at_text(event.json)
        known = self._oldest_times.get((uid, oldest))
        if known is not None:
            return known
        try:
            archived = (await self._reader.after(name, oldest - 1, 1)).events
        except Unavailable:
            return None
        at = codec.created_at_text((archived[0] if archived else event).json)
        if len(self._oldest_times) >= OLDEST_TIMES_KEPT:
            self._oldest_times.clear()
        self._oldest_times[uid, oldest] = at
        return at

    async def list(self) -> list[StoreInfo]:
        """Every store, by name."""
        return (await self.page())[0]

    async def page(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        contains: str | None = None,
        visible: Callable[[str], bool] | None = None,
    ) -> tuple[builtins.list[StoreInfo], int]:
        """Stores by name whose name contains ``contains`` (any case) and that ``visible`` lets
        the caller see: ``limit`` of them from ``offset`` (None: all), and how many there are.
        Names are filtered before any store is read, so a page costs its own stores."""
        names = sorted(await call(self._redis.smembers(STORE_REGISTRY)))
        if contains:
            names = [n for n in names if contains.lower() in n]
        if visible is not None:
            names = [n for n in names if visible(n)]
        end = None if limit is None else offset + limit
        stores = []
        for name in names[offset:end]:
            try:
                stores.append(await self.get(name))
            except StoreNotFound:
                continue  # deleted between the two reads
        return stores, len(names)

    async def delete(self, name: str) -> None:
        """Delete the store and every event of it, in Redis and in the archive (later, if the
        archive does not answer now: ``archiver.forget``)."""
        k = keys_of(name)
        uid = await call(
            self._delete(
                keys=[
                    k.meta,
                    k.log,
                    k.streams,
                    k.stream_created,
                    k.stream_updated,
                    k.offsets,
                    k.times,
                    k.lifecycle_lease,
                ],
                args=[k.stream_prefix, k.type_prefix, k.tag_prefix],
            )
        )
        await call(self._redis.srem(STORE_REGISTRY, name))
        if not uid:
            raise StoreNotFound(name)
        if self._archive is not None:
            # The store is gone (its name may be used again at once); its archived events go
            # now, or, if the archive does not answer, once it does (the lifecycle's round).
            await forget(self._redis, self._archive, uid)
