"""Store administration: create, list, describe, delete."""

from __future__ import annotations

import uuid
from typing import Any

from . import codec
from .errors import StoreAlreadyExists, StoreNotFound
from .keys import STORE_REGISTRY, StoreKeys
from .log import keys_of
from .redis import call, load_script
from .types import StoreInfo, now_iso


class StoreAdmin:
    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._create = load_script(redis, "create_store")
        self._delete = load_script(redis, "delete_store")

    async def create(
        self, name: str, *, description: str | None = None, settings: dict | None = None
    ) -> StoreInfo:
        k = StoreKeys(name)  # the caller validated the name
        fields = {
            "uid": str(uuid.uuid4()),
            "createdAt": now_iso(),
            "head": "0",
            "settings": codec.dumps_str(settings or {}),
        }
        if description is not None:
            fields["description"] = description
        args = [item for pair in fields.items() for item in pair]
        if not await call(self._create(keys=[k.meta], args=args)):
            raise StoreAlreadyExists(name)
        await self.register(name)
        return await self.get(name)

    async def register(self, name: str) -> None:
        """Add a store to the listing (the registry lives outside the store's slot)."""
        await call(self._redis.sadd(STORE_REGISTRY, name))

    async def get(self, name: str) -> StoreInfo:
        k = keys_of(name)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.meta)
            pipe.zcard(k.streams)
            meta, streams = await call(pipe.execute())
        if not meta or "uid" not in meta:
            raise StoreNotFound(name)
        return StoreInfo(
            name=name,
            description=meta.get("description"),
            settings=codec.loads(meta.get("settings") or "{}"),
            created_at=meta.get("createdAt", ""),
            head_position=int(meta.get("head") or 0),
            total_streams=int(streams),
        )

    async def list(self) -> list[StoreInfo]:
        names = sorted(await call(self._redis.smembers(STORE_REGISTRY)))
        stores = []
        for name in names:
            try:
                stores.append(await self.get(name))
            except StoreNotFound:
                continue  # deleted between the two reads
        return stores

    async def delete(self, name: str) -> None:
        k = keys_of(name)
        existed = await call(
            self._delete(
                keys=[k.meta, k.log, k.streams, k.stream_created, k.stream_updated],
                args=[k.stream_prefix],
            )
        )
        await call(self._redis.srem(STORE_REGISTRY, name))
        if not existed:
            raise StoreNotFound(name)
