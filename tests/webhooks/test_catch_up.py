"""Webhook catch-up across the archive (contract section 8): a subscription paused while retention
moved its events out of Redis catches up from PostgreSQL through the one LogReader, in order, then
from Redis; history deleted everywhere is counted, logged and skipped. Real Redis, the machine's
PostgreSQL, a real dispatcher process, a receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from broker import (
    Archive,
    EventLog,
    Lifecycle,
    LifecycleOptions,
    NewEvent,
    StoreAdmin,
)
from broker.keys import StoreKeys
from broker.webhooks import WebhookConfig, WebhookStore
from tests.harness import wait_for
from tests.webhooks.support import STEADY_LEASE, DispatcherProcess, Receiver

Spawn = Callable[..., DispatcherProcess]
Make = Callable[..., Receiver]
STORE = "orders"
EVENTS = 600
STREAMS = 5
OPTIONS = LifecycleOptions(copy_batch=500, trim_batch=500, delete_batch=500)


async def fill(log: EventLog, n: int) -> None:
    for start in range(0, n, 20):
        stream = f"order-{(start // 20) % STREAMS}"
        await log.append(
            STORE, stream, [NewEvent("order.placed", {"n": start + j}) for j in range(20)]
        )


async def settle(lifecycle: Lifecycle) -> None:
    for _ in range(1000):
        if not await lifecycle.run_once():
            return
    raise AssertionError("the lifecycle never settled")


async def paused_subscription(redis: aioredis.Redis, receiver: Receiver) -> str:
    webhooks = WebhookStore(redis)
    made = await webhooks.create(
        STORE, WebhookConfig.build(event_filter="*", url=receiver.url), position="earliest"
    )
    sub_id = made.subscription.id
    assert made.secret is not None
    receiver.secrets[sub_id] = made.secret
    await webhooks.set_status(STORE, sub_id, "paused", "while retention runs")
    return sub_id


def in_order(receiver: Receiver, sub_id: str) -> list[int]:
    got = [d.event["globalPosition"] for d in receiver.of(sub_id)]
    by_stream: dict[str, list[int]] = {}
    for d in receiver.of(sub_id):
        by_stream.setdefault(d.event["streamId"], []).append(d.event["streamPosition"])
    for stream, seen in by_stream.items():
        assert seen == sorted(seen), stream
    return got


@pytest.mark.timeout(60)
async def test_a_paused_subscription_catches_up_from_the_archive(
    redis: aioredis.Redis, archive_url: str, receivers: Make, dispatchers: Spawn
) -> None:
    archive = Archive(archive_url)
    try:
        log = EventLog(redis, archive=archive)
        await StoreAdmin(redis, archive).create(STORE, settings={"hotRetention": {"maxEvents": 50}})
        receiver = receivers().start()
        sub_id = await paused_subscription(redis, receiver)
        await fill(log, EVENTS)
        await settle(Lifecycle(redis, log, archive, OPTIONS))
        hot = await redis.xlen(StoreKeys(STORE).log)
        assert hot <= 100, "retention moved most of the log to the archive"
        dispatcher = dispatchers(DELTAGATE_ARCHIVE_URL=archive_url, **STEADY_LEASE).wait_ready()
        await WebhookStore(redis).resume(STORE, sub_id)
        await asyncio.to_thread(
            wait_for,
            lambda: len(receiver.of(sub_id)) >= EVENTS,
            timeout=40,
            what=f"{EVENTS} deliveries",
        )
        got = in_order(receiver, sub_id)
        assert sorted(got) == list(range(1, EVENTS + 1)), "every event, archived or hot"
        assert receiver.duplicates(sub_id) == 0
        assert dispatcher.metrics()["deltagate_webhook_history_gone_events_total"] == 0
    finally:
        await archive.close()


@pytest.mark.timeout(60)
async def test_history_deleted_everywhere_is_counted_and_skipped(
    redis: aioredis.Redis, receivers: Make, dispatchers: Spawn
) -> None:
    log = EventLog(redis)
    await StoreAdmin(redis).create(STORE, settings={"hotRetention": {"maxEvents": 50}})
    receiver = receivers().start()
    sub_id = await paused_subscription(redis, receiver)
    await fill(log, 200)
    await settle(Lifecycle(redis, log, None, OPTIONS))  # no archive: trimmed is gone
    oldest = int(await redis.hget(StoreKeys(STORE).meta, "oldest") or 1)
    assert oldest > 1
    dispatcher = dispatchers(**STEADY_LEASE).wait_ready()
    await WebhookStore(redis).resume(STORE, sub_id)
    await asyncio.to_thread(
        wait_for,
        lambda: len(receiver.of(sub_id)) >= 200 - oldest + 1,
        timeout=30,
        what="the events that still exist",
    )
    assert sorted(in_order(receiver, sub_id)) == list(range(oldest, 201))
    metrics = await asyncio.to_thread(dispatcher.metrics)
    assert metrics["deltagate_webhook_history_gone_events_total"] == oldest - 1
