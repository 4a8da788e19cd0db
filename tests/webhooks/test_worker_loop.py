"""The subscription worker's loop (``broker/webhooks/worker.py``) in a trickle of events: an
announced event goes to a lane, and its delivery finishes, without a turn of the loop each time;
the loop turns when it has something to do (here: save progress). An in-process ``Dispatcher`` on
the private redis-server, delivering to a receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.asyncio as aioredis

from broker import EventLog, NewEvent, StoreAdmin
from broker.webhooks import (
    Dispatcher,
    DispatcherOptions,
    TargetPolicy,
    WebhookConfig,
    WebhookStore,
)
from broker.webhooks.worker import SAVE_DELAY, Worker
from tests.webhooks.support import Receiver

STORE = "orders"
EVENTS = 30


async def saved(webhooks: WebhookStore, sub_id: str, position: int, seconds: float = 10) -> None:
    """Until the subscription's saved progress reaches ``position``."""
    async with asyncio.timeout(seconds):
        while (await webhooks.get(STORE, sub_id)).position < position:  # noqa: ASYNC110 (Redis)
            await asyncio.sleep(0.005)


@pytest.mark.timeout(60)
async def test_a_trickle_turns_the_loop_once_per_save_not_per_event(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = 0
    sleep = Worker._sleep

    async def counted(self: Worker) -> None:
        nonlocal turns
        turns += 1
        await sleep(self)

    monkeypatch.setattr(Worker, "_sleep", counted)
    await StoreAdmin(redis).create(STORE)
    receiver = Receiver().start()
    webhooks = WebhookStore(redis)
    made = await webhooks.create(STORE, WebhookConfig.build(event_filter="*", url=receiver.url))
    sub_id = made.subscription.id
    assert made.secret is not None
    receiver.secrets[sub_id] = made.secret
    options = DispatcherOptions(poll_interval=2.0, targets=TargetPolicy.build(loopback=True))
    dispatcher = Dispatcher(redis, options)
    running = asyncio.create_task(dispatcher.run())
    log = EventLog(redis)
    try:
        first = await log.append(STORE, "order-0", [NewEvent("order.placed", {"n": -1})])
        await saved(webhooks, sub_id, first.last_position, 20)
        before = turns
        for n in range(EVENTS):
            # One event at a time, each delivered and saved before the next: no batching helps.
            done = await log.append(STORE, f"order-{n % 5}", [NewEvent("order.placed", {"n": n})])
            await saved(webhooks, sub_id, done.last_position)
            await asyncio.sleep(SAVE_DELAY)
        per_event = (turns - before) / EVENTS
    finally:
        await dispatcher.close()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        receiver.stop()
    assert len(receiver.of(sub_id)) == EVENTS + 1
    # Each event needs one save (it is saved before the next arrives), so one turn of the loop;
    # one more per poll interval. A turn when the event was announced and another when
    # its delivery finished would make two.
    assert per_event < 1.5, f"{per_event:.2f} turns of the loop per event"
