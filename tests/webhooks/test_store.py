"""``broker.webhooks.WebhookStore`` (the API's side) and ``ProgressStore`` (the dispatcher's)
against the private redis-server: the writes that record delivery outcomes are fenced by the
lease, the dead-letter list is bounded, and a store deleted and re-created under the same name
starts without the old subscriptions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from broker import (
    EventLog,
    InvalidSubscriptionConfig,
    NewEvent,
    RedisConfig,
    StoreAdmin,
    Unavailable,
    codec,
    connect,
)
from broker.keys import WebhookKeys
from broker.webhooks import ProgressStore, WebhookConfig, WebhookStore, WebhookSubscription

STORE = "orders"
CONFIG = WebhookConfig.build(event_filter="order.*", url="http://127.0.0.1:9/hook")


@pytest.fixture(autouse=True)
async def orders(redis: aioredis.Redis) -> None:
    await StoreAdmin(redis).create(STORE)


async def test_outcomes_are_fenced_by_the_lease(redis: aioredis.Redis) -> None:
    store = WebhookStore(redis)
    progress = ProgressStore(redis)
    sub = (await store.create(STORE, CONFIG)).subscription
    lease = WebhookKeys(STORE).lease(sub.id)
    assert await progress.progress(STORE, sub.id, "a", position=3, succeeded=True) == "lost"
    await redis.set(lease, "a", px=5000)
    assert await progress.progress(STORE, sub.id, "b", position=3, succeeded=True) == "lost"
    assert await progress.progress(STORE, sub.id, "a", position=3, succeeded=True) == "ok"
    failed = await progress.failed(
        STORE, sub.id, "b", event_id="e", position=4, attempts=1, error="x", auto_pause_ms=0
    )
    assert failed == "lost"
    got = await store.get(STORE, sub.id)
    assert got.position == 3 and got.last_error is None and got.last_success_at
    # Progress never goes back.
    assert await progress.progress(STORE, sub.id, "a", position=2, succeeded=False) == "ok"
    assert (await store.get(STORE, sub.id)).position == 3
    await store.delete(STORE, sub.id)
    assert await redis.exists(lease) == 0, "deleting fences the replica off"
    await redis.set(lease, "a", px=5000)
    assert await progress.progress(STORE, sub.id, "a", position=5, succeeded=True) == "gone"
    assert await redis.exists(WebhookKeys(STORE).record(sub.id)) == 0, "not recreated"


async def test_positions_finished_ahead_are_kept_until_the_progress_passes_them(
    redis: aioredis.Redis,
) -> None:
    """A save records the positions finished above its position (a takeover skips them), in
    ZADDs of 500 each: 1,201 of them, some at or below the position (dropped), survive whole."""
    sub = (await WebhookStore(redis).create(STORE, CONFIG)).subscription
    await redis.set(WebhookKeys(STORE).lease(sub.id), "a", px=5000)
    progress = ProgressStore(redis)
    done = [5, 10, *range(100, 1301)]
    assert await progress.progress(STORE, sub.id, "a", position=10, succeeded=True, done=done)
    kept = await redis.zrange(WebhookKeys(STORE).done(sub.id), 0, -1, withscores=True)
    assert [(int(m), int(s)) for m, s in kept] == [(p, p) for p in range(100, 1301)]
    assert await progress.progress(STORE, sub.id, "a", position=1000, succeeded=True)
    loaded = await progress.load(STORE, sub.id)
    assert loaded is not None and loaded[1].done == set(range(1001, 1301))


async def test_the_dead_letter_list_is_bounded(redis: aioredis.Redis) -> None:
    store = WebhookStore(redis)
    progress = ProgressStore(redis)
    sub = (await store.create(STORE, CONFIG)).subscription
    await redis.set(WebhookKeys(STORE).lease(sub.id), "a", px=5000)
    for g in range(1, 6):
        event = codec.dumps_str({"globalPosition": g, "eventId": f"e{g}"})
        status, dropped = await progress.dead_letter(
            STORE,
            sub.id,
            "a",
            event_id=f"e{g}",
            position=g,
            stream_id="s",
            event_json=event,
            attempts=3,
            error="HTTP 500",
            limit=3,
        )
        assert status == "ok" and dropped == (1 if g > 3 else 0)
    texts, total = await store.dead_letters(STORE, sub.id)
    assert total == 3
    assert [codec.loads(t)["eventId"] for t in texts] == ["e3", "e4", "e5"], "oldest dropped"
    assert await redis.hlen(WebhookKeys(STORE).letters(sub.id)) == 3
    assert await store.redrive(STORE, sub.id, "e4") == 1
    assert (await store.dead_letters(STORE, sub.id))[1] == 2
    assert await store.redrive(STORE, sub.id) == 2
    assert (await store.dead_letters(STORE, sub.id))[1] == 0


async def test_a_recreated_store_keeps_the_old_subscriptions_with_their_epoch(
    redis: aioredis.Redis,
) -> None:
    """They stay visible (never silently gone) and keep the old store's epoch, so the dispatcher
    auto-pauses them instead of delivering the new store's events after an old cursor."""
    store = WebhookStore(redis)
    old = (await store.create(STORE, CONFIG)).subscription
    await EventLog(redis).append(STORE, "order-1", [NewEvent("order.placed", {})])
    admin = StoreAdmin(redis)
    first_epoch = (await admin.get(STORE)).uid
    assert old.epoch == first_epoch
    await admin.delete(STORE)
    await admin.create(STORE)
    assert [s.id for s in await store.subscriptions(STORE)] == [old.id]
    assert await ProgressStore(redis).all_refs() == [(STORE, old.id)]
    again = await store.create(STORE, CONFIG)
    assert again.outcome == "existing" and again.subscription.id == old.id
    assert again.subscription.epoch == first_epoch, "still the old history's"
    other = WebhookConfig.build(event_filter="order.*", url="http://127.0.0.1:9/other")
    made = await store.create(STORE, other)
    assert made.subscription.epoch == (await admin.get(STORE)).uid != first_epoch


async def test_outcomes_of_a_recreated_stores_old_history_move_nothing(
    redis: aioredis.Redis,
) -> None:
    """A delivery of the old history that finishes after the store was created again (in flight
    across the auto-pause) writes nothing: not the progress the auto-pause reported, nor a failed
    attempt, nor a dead letter. Once resumed (the new epoch) the same replica's writes land."""
    store, progress = WebhookStore(redis), ProgressStore(redis)
    sub = (await store.create(STORE, CONFIG)).subscription
    k = WebhookKeys(STORE)
    await redis.set(k.lease(sub.id), "a", px=5000)
    await EventLog(redis).append(STORE, "order-1", [NewEvent("order.placed", {})] * 3)
    assert await progress.progress(STORE, sub.id, "a", position=2, succeeded=True) == "ok"
    admin = StoreAdmin(redis)
    await admin.delete(STORE)
    assert await progress.progress(STORE, sub.id, "a", position=3, succeeded=True) == "ok", (
        "a deleted store has no history to fence by"
    )
    await admin.create(STORE)
    record_before = await redis.hgetall(k.record(sub.id))
    assert await progress.progress(STORE, sub.id, "a", position=4, succeeded=True) == "recreated"
    failed = await progress.failed(
        STORE, sub.id, "a", event_id="e4", position=4, attempts=1, error="x", auto_pause_ms=1
    )
    assert failed == "recreated"
    dead = await progress.dead_letter(
        STORE,
        sub.id,
        "a",
        event_id="e4",
        position=4,
        stream_id="order-1",
        event_json=codec.dumps_str({"globalPosition": 4, "eventId": "e4"}),
        attempts=3,
        error="HTTP 500",
        limit=3,
    )
    assert dead == ("recreated", 0)
    assert await redis.hgetall(k.record(sub.id)) == record_before
    assert await redis.exists(k.attempts(sub.id), k.dead(sub.id), k.letters(sub.id)) == 0
    resumed = await store.resume(STORE, sub.id, "earliest")
    assert resumed.position == 0 and resumed.epoch == (await admin.get(STORE)).uid
    await redis.set(k.lease(sub.id), "a", px=5000)  # (a resume ends the lease)
    await EventLog(redis).append(STORE, "order-1", [NewEvent("order.placed", {})])
    assert await progress.progress(STORE, sub.id, "a", position=1, succeeded=True) == "ok"
    assert (await store.get(STORE, sub.id)).position == 1


async def test_upsert_converges_and_refuses_a_duplicate_of_another_id(
    redis: aioredis.Redis,
) -> None:
    store = WebhookStore(redis)
    first = await store.create(STORE, CONFIG, sub_id="a", upsert=True)
    assert first.outcome == "created" and first.secret
    again = await store.create(STORE, CONFIG, sub_id="a", upsert=True)
    assert again.outcome == "unchanged" and again.secret is None
    other = WebhookConfig.build(event_filter="order.*", url="http://127.0.0.1:9/other")
    changed = await store.create(STORE, other, sub_id="a", upsert=True)
    assert changed.outcome == "updated" and changed.subscription.config.url.endswith("/other")
    await store.create(STORE, CONFIG, sub_id="b", upsert=True)
    with pytest.raises(InvalidSubscriptionConfig):
        await store.create(STORE, CONFIG, sub_id="a", upsert=True)  # that is b's config now


async def leased(
    redis: aioredis.Redis, store: WebhookStore, holders: list[str]
) -> list[WebhookSubscription]:
    """A subscription per holder, each leased to its holder."""
    subs = []
    for i, holder in enumerate(holders):
        config = WebhookConfig.build(event_filter="order.*", url=f"http://127.0.0.1:9/hook/{i}")
        subs.append((await store.create(STORE, config)).subscription)
        await redis.set(WebhookKeys(STORE).lease(subs[-1].id), holder, px=5000)
    return subs


async def test_saves_asked_for_together_share_a_round_trip_each_with_its_own_answer(
    redis: aioredis.Redis,
) -> None:
    store = WebhookStore(redis)
    progress = ProgressStore(redis)
    subs = await leased(redis, store, ["a"] * 5 + ["b"])
    batches: list[int] = []
    send = progress._send

    async def counted(batch: list[Any]) -> list[Any]:
        batches.append(len(batch))
        return await send(batch)

    progress._send = counted  # type: ignore[method-assign]
    statuses = await asyncio.gather(
        *(progress.progress(STORE, s.id, "a", position=7, succeeded=True) for s in subs)
    )
    assert statuses == ["ok"] * 5 + ["lost"]
    assert batches == [5], "the first went by itself, the rest together in the next round trip"
    positions = [(await store.get(STORE, s.id)).position for s in subs]
    assert positions == [7] * 5 + [0]


async def test_saves_sent_together_survive_redis_losing_the_script(redis: aioredis.Redis) -> None:
    store = WebhookStore(redis)
    progress = ProgressStore(redis)
    subs = await leased(redis, store, ["a"] * 3)
    assert await progress.progress(STORE, subs[0].id, "a", position=1, succeeded=True) == "ok"
    await redis.script_flush()  # (what a Redis restart does)
    batch = []
    for s in subs:
        k = WebhookKeys(STORE)
        keys = [k.record(s.id), k.lease(s.id), k.attempts(s.id), k.done(s.id)]
        keys += [k.redrive(s.id), k.letters(s.id), k.meta]
        batch.append((keys, ["a", 4, "1", "2026-12-01T00:00:00.000Z", 0, 0, 0], None))
    assert await progress._send(batch) == ["ok"] * 3
    assert [(await store.get(STORE, s.id)).position for s in subs] == [4] * 3


async def test_saves_together_against_an_unavailable_redis_all_fail_as_unavailable() -> None:
    client = connect(RedisConfig(url="redis://127.0.0.1:1/0", timeout=0.5))
    progress = ProgressStore(client)
    try:
        outcomes = await asyncio.gather(
            *(
                progress.progress(STORE, f"sub{i}", "a", position=1, succeeded=True)
                for i in range(4)
            ),
            return_exceptions=True,
        )
        assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    finally:
        await progress.close()
        await client.aclose()
