"""Store administration: create, list, describe, delete, and what a deleted store leaves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker import (
    EventLog,
    Filter,
    NewEvent,
    StoreAdmin,
    StoreAlreadyExists,
    StoreNotFound,
)
from broker.errors import InvalidSettings
from broker.keys import StoreKeys
from broker.reader import StreamSlice


async def test_create_and_get(stores: StoreAdmin) -> None:
    info = await stores.create("billing", description="money", settings={"retention": "30d"})
    assert info.name == "billing"
    assert info.description == "money"
    assert info.settings == {"retention": "30d"}
    assert info.created_at.endswith("Z")
    assert (info.head_position, info.total_events, info.total_streams) == (0, 0, 0)
    assert await stores.get("billing") == info

    plain = await stores.create("plain")
    assert plain.description is None and plain.settings == {}

    with pytest.raises(StoreAlreadyExists) as caught:
        await stores.create("billing")
    assert caught.value.code == "EVENT_STORE_ALREADY_EXISTS"
    assert (await stores.get("billing")).description == "money"


async def test_get_missing(stores: StoreAdmin) -> None:
    for name in ("missing", "UPPER", "a{b}", "x*", "no"):
        with pytest.raises(StoreNotFound) as caught:
            await stores.get(name)
        assert caught.value.details == {"eventStoreName": name}


async def test_list_and_statistics(stores: StoreAdmin, log: EventLog) -> None:
    assert await stores.list() == []
    for name in ("zeta", "alpha", "mid_store"):
        await stores.create(name)
    assert [s.name for s in await stores.list()] == ["alpha", "mid_store", "zeta"]

    await log.append("alpha", "a-1", [NewEvent("t", {}), NewEvent("t", {})])
    await log.append("alpha", "a-2", [NewEvent("t", {})])
    await log.append("alpha", "a-1", [NewEvent("t", {})])
    alpha = await stores.get("alpha")
    assert (alpha.total_streams, alpha.total_events, alpha.head_position) == (2, 4, 4)
    listed = {s.name: s for s in await stores.list()}
    assert listed["alpha"] == alpha
    assert listed["zeta"].head_position == 0


async def test_a_page_of_stores(stores: StoreAdmin) -> None:
    for name in ("zeta", "alpha", "my-app", "my-app-2", "beta"):
        await stores.create(name)

    async def names(**kwargs: object) -> tuple[list[str], int]:
        page, total = await stores.page(**kwargs)  # type: ignore[arg-type]
        return [s.name for s in page], total

    assert await names() == (["alpha", "beta", "my-app", "my-app-2", "zeta"], 5)
    assert await names(limit=2, offset=1) == (["beta", "my-app"], 5)
    assert await names(contains="APP") == (["my-app", "my-app-2"], 2)
    assert await names(contains="app", limit=1, offset=1) == (["my-app-2"], 2)
    allowed = {"alpha", "my-app-2"}
    assert await names(visible=allowed.__contains__) == (["alpha", "my-app-2"], 2)
    assert await names(visible=allowed.__contains__, contains="a", offset=5) == ([], 2)


async def test_update_merges_and_loses_no_concurrent_change(stores: StoreAdmin) -> None:
    made = await stores.create("shop", description="d", settings={"a": {"b": 1, "c": 2}})
    info = await stores.update("shop", {"settings": {"a": {"b": None, "d": 3}, "e": [1]}})
    assert info.settings == {"a": {"c": 2, "d": 3}, "e": [1]}
    assert (info.description, info.uid, info.created_at) == ("d", made.uid, made.created_at)
    assert (await stores.update("shop", {"description": None})).description is None
    assert (await stores.update("shop", {"description": "x"})).description == "x"
    with pytest.raises(InvalidSettings):
        await stores.update("shop", {"settings": {"retentionPeriodDays": 0}})
    with pytest.raises(StoreNotFound):
        await stores.update("nope", {"description": "x"})
    # Twenty updates at once, each adding its own key: every one survives.
    await asyncio.gather(*(stores.update("shop", {"settings": {f"k{i}": i}}) for i in range(20)))
    settings = (await stores.get("shop")).settings
    assert {k: v for k, v in settings.items() if k.startswith("k")} == {
        f"k{i}": i for i in range(20)
    }


async def test_delete(stores: StoreAdmin, log: EventLog) -> None:
    await stores.create("doomed")
    await stores.create("doomed-not")  # shares a prefix, must survive
    await log.append("doomed", "s", [NewEvent("t", {})])
    await log.append("doomed-not", "s", [NewEvent("t", {})])

    await stores.delete("doomed")
    with pytest.raises(StoreNotFound):
        await stores.get("doomed")
    with pytest.raises(StoreNotFound):
        await stores.delete("doomed")
    with pytest.raises(StoreNotFound):
        await log.head("doomed")
    with pytest.raises(StoreNotFound):
        await log.append("doomed", "s", [NewEvent("t", {})])
    assert not await log.exists("doomed")
    assert [s.name for s in await stores.list()] == ["doomed-not"]
    survivor = await stores.get("doomed-not")
    assert survivor.head_position == 1 and survivor.total_streams == 1

    with pytest.raises(StoreNotFound):
        await stores.delete("never-was")
    with pytest.raises(StoreNotFound):
        await stores.delete("Bad{Name}")


async def test_delete_leaves_no_keys_but_idempotency_records(
    redis: Any, stores: StoreAdmin, log: EventLog
) -> None:
    await stores.create("gone")
    for n in range(3):
        await log.append("gone", f"s-{n}", [NewEvent("t", {})], idempotency_key=f"k{n}")
    keys = StoreKeys("gone")
    await stores.delete("gone")
    left = [k async for k in redis.scan_iter(match=keys.tag + "*")]
    assert left and all(k.startswith(keys.tag + ":idem:") for k in left)


async def test_a_recreated_store_starts_empty(stores: StoreAdmin, log: EventLog) -> None:
    await stores.create("phoenix", description="first life")
    old = await log.append(
        "phoenix", "order-1", [NewEvent("t", {}) for _ in range(3)], idempotency_key="key"
    )
    await log.append("phoenix", "order-2", [NewEvent("t", {})])
    await stores.delete("phoenix")

    again = await stores.create("phoenix")
    assert again.description is None
    assert (again.head_position, again.total_streams) == (0, 0)
    assert await log.read_stream("phoenix", "order-1") == StreamSlice([], 0)
    assert await log.list_streams("phoenix") == ([], 0)
    page = await log.query("phoenix", flt=None, include_count=True)
    assert page.events == [] and page.total == 0
    page = await log.query("phoenix", flt=Filter.parse("*", "order-1"), include_count=True)
    assert page.events == [] and page.total == 0

    # The old store's idempotency key must not replay into the new one.
    new = await log.append(
        "phoenix", "order-1", [NewEvent("t", {})], expected="no_stream", idempotency_key="key"
    )
    assert not new.replayed
    assert new.transaction_id != old.transaction_id
    assert (new.first_position, new.last_position, new.stream_version) == (1, 1, 1)
    replay = await log.append("phoenix", "order-1", [NewEvent("t", {})], idempotency_key="key")
    assert replay.replayed and replay.transaction_id == new.transaction_id
    assert await log.head("phoenix") == 1
