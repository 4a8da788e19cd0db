"""Cursors that cannot lie (contract section 10, docs/streaming.md "Resets"): a resume from beyond
the head, into a re-created store, or onto a Redis that lost its data is told (``reset``) and then
served every event of the store's current history exactly once, in order, then live. And no false
alarm: a cursor that an append in flight just made valid is never "ahead"."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.wsclient import Client
from tests.harness import Pod, RedisServer, spawn_pods, wait_for

STORE = "cursor"
FAST = {"DELTAGATE_POLL_INTERVAL": "0.3", "DELTAGATE_CHECKPOINT_INTERVAL": "1"}


def append(pod: Pod, n: int, stream: str = "s-1") -> dict[str, Any]:
    events = [{"type": "thing.happened", "data": {"i": i}} for i in range(n)]
    response = httpx.post(
        f"{pod.url}/event-stores/{STORE}/streams/{stream}", json={"events": events}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def subscribed(pod: Pod, position: Any, epoch: str | None = None) -> Client:
    client = Client(pod.ws_url, STORE)
    await client.connect()
    await client.subscribe("*", position, epoch=epoch)
    return client


def reset_then_exactly(client: Client, reason: str, history: list[int]) -> None:
    assert [r["reason"] for r in client.got.resets] == [reason], client.got.resets
    assert client.got.positions == history, client.got.positions


async def test_a_position_beyond_the_head_is_reset_then_served_from_earliest(
    pods: list[Pod], redis_url: str
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST)
    append(pod, 5)
    client = await subscribed(pod, 1000)
    await client.wait(lambda: client.got.caught_up is not None, what="caughtUp")
    reset = client.got.resets[0]
    assert reset["headPosition"] == 5 and reset["epoch"] == client.got.subscribed[0]["epoch"]
    reset_then_exactly(client, "position-ahead", [1, 2, 3, 4, 5])
    append(pod, 1)
    await client.wait(lambda: client.got.positions[-1:] == [6], what="the next append, live")
    assert client.got.positions == [1, 2, 3, 4, 5, 6]
    await client.disconnect()


async def test_a_store_deleted_and_recreated_is_a_new_history(
    pods: list[Pod], redis_url: str
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST)
    append(pod, 5)
    watcher = await subscribed(pod, "earliest")  # stays connected through it all
    await watcher.wait(lambda: len(watcher.got.events) == 5, what="the old history")
    old = await subscribed(pod, "earliest")
    await old.wait(lambda: len(old.got.events) == 5, what="the old history")
    epoch = old.got.subscribed[0]["epoch"]
    await old.disconnect()
    response = httpx.delete(f"{pod.url}/event-stores/{STORE}", params={"confirm": "true"})
    assert response.status_code == 200
    append(pod, 3)  # auto-created: a new epoch, positions 1..3 again
    new_epoch = httpx.get(f"{pod.url}/event-stores/{STORE}").json()["epoch"]
    assert new_epoch != epoch
    resumed = await subscribed(pod, 2, epoch)
    await resumed.wait(lambda: resumed.got.caught_up is not None, what="caughtUp")
    reset_then_exactly(resumed, "store-recreated", [1, 2, 3])
    assert resumed.got.resets[0]["epoch"] == new_epoch
    await watcher.wait(lambda: watcher.got.resets, what="the live subscriber's reset")
    await watcher.wait(lambda: len(watcher.got.events) == 8, what="the new history")
    assert [r["reason"] for r in watcher.got.resets] == ["store-recreated"]
    assert watcher.got.positions == [1, 2, 3, 4, 5, 1, 2, 3]
    append(pod, 1)
    for client in (resumed, watcher):
        await client.wait(lambda c=client: c.got.positions[-1] == 4, what="live after reset")
        await client.disconnect()


async def test_a_redis_restarted_without_persistence_under_two_pods(pods: list[Pod]) -> None:
    with tempfile.TemporaryDirectory(prefix="dg-volatile-") as tmp:
        volatile = RedisServer("/usr/bin/redis-server", Path(tmp), appendonly=False)
        volatile.start()
        try:
            first, second = spawn_pods(pods, volatile.url, 2, **FAST)
            append(first, 6)
            clients = [await subscribed(pod, "earliest") for pod in (first, second, first)]
            for client in clients:
                await client.wait(lambda c=client: len(c.got.events) == 6, what="history")
            volatile.restart()  # everything is gone: positions 1..6 will be other events
            wait_for(lambda: first.ready() and second.ready(), timeout=20, what="pods ready")
            append(second, 2)
            for client in clients:
                await client.wait(lambda c=client: c.got.resets, timeout=20, what="a reset")
                await client.wait(lambda c=client: len(c.got.events) == 8, what="new history")
                assert len(client.got.resets) == 1
                assert client.got.positions == [1, 2, 3, 4, 5, 6, 1, 2]
            append(first, 1)
            for client in clients:
                await client.wait(lambda c=client: c.got.positions[-1] == 3, what="live")
                await client.disconnect()
        finally:
            volatile.stop()


def append_through_the_outage(pod: Pod, n: int) -> None:
    """``n`` events in one request, retried (with its idempotency key) until the restarted
    Redis takes it: writers that carry on at once, as queued retries do."""
    events = [{"type": "thing.happened", "data": {"i": i}} for i in range(n)]
    for _ in range(1000):
        try:
            response = httpx.post(
                f"{pod.url}/event-stores/{STORE}/streams/s-1",
                json={"events": events},
                headers={"Idempotency-Key": "after-the-loss"},
                timeout=5,
            )
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 201:
            return
        time.sleep(0.005)
    raise AssertionError("the append never went through")


async def test_a_redis_that_lost_its_last_writes_under_writers_that_went_on(
    pods: list[Pod],
) -> None:
    """Redis comes back from an older snapshot (positions 11..15 lost) and the writers get
    past the subscribers' cursor (15) before any pod's first look: the positions 11..15 are
    other events now. Every live subscriber, on every pod, is told (``reset``) and gets the
    store's history as it is, rather than taking the new 11..15 for the ones it saw."""
    with tempfile.TemporaryDirectory(prefix="dg-rollback-") as tmp:
        server = RedisServer("/usr/bin/redis-server", Path(tmp), appendonly=False)
        server.start()
        try:
            writer, *readers = spawn_pods(pods, server.url, 3, **FAST)
            append(writer, 10)
            clients = [await subscribed(pod, "earliest") for pod in (*readers, writer)]
            server.client().save()  # the snapshot Redis will come back from
            append(writer, 5)
            for client in clients:
                await client.wait(lambda c=client: len(c.got.events) == 15, what="15 events")
            writing = asyncio.create_task(asyncio.to_thread(append_through_the_outage, writer, 10))
            server.client().shutdown(nosave=True)
            server.proc.wait(10)  # type: ignore[union-attr]
            # Down long enough that the pods' listeners wait a second or more between tries:
            # the writer, trying every 5 ms, is past position 15 before any of them looks.
            await asyncio.sleep(2)
            server.start()  # from the snapshot: the head is 10 again
            await writing
            for client in clients:
                await client.wait(lambda c=client: c.got.resets, timeout=20, what="a reset")
                await client.wait(lambda c=client: len(c.got.events) == 35, what="new history")
                assert [r["reason"] for r in client.got.resets] == ["position-ahead"]
                assert client.got.positions == [*range(1, 16), *range(1, 21)]
                await client.disconnect()
        finally:
            server.stop()


async def test_a_cursor_that_an_append_in_flight_made_valid_is_never_ahead(
    pods: list[Pod], redis_url: str
) -> None:
    """The race of docs/streaming.md: a client gets event N from one pod and at once resumes at
    N on another, many times over, while appends go on; another pod's shared head read may
    predate the resume, and must not turn it into a reset."""
    first, second = spawn_pods(pods, redis_url, 2, **FAST)
    append(first, 1)
    stop = asyncio.Event()

    async def appender() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while not stop.is_set():
                await http.post(
                    f"{first.url}/event-stores/{STORE}/streams/s-2",
                    json={"events": [{"type": "thing.happened", "data": {}}]},
                )

    async def churn() -> None:
        """Subscribes on the second pod all the time, so a shared head read is mostly in flight
        when a resume arrives there."""
        client = Client(second.ws_url, STORE)
        await client.connect()
        n = 0
        while not stop.is_set():
            n += 1
            await client.send(action="subscribe", eventFilter="*", subscriptionId=f"c{n}")
            await client.send(action="unsubscribe", subscriptionId=f"c{n}")
            await asyncio.sleep(0)
        await client.disconnect()

    writer = asyncio.create_task(appender())
    churner = asyncio.create_task(churn())
    try:
        live = await subscribed(first, "latest")
        for _ in range(60):
            seen = len(live.got.events)
            await live.wait(lambda n=seen: len(live.got.events) > n, what="an event")
            cursor = live.got.positions[-1]
            resumers = [await subscribed(second, cursor) for _ in range(3)]
            for client in resumers:
                assert not client.got.resets, client.got.resets
                await client.disconnect()
        await live.disconnect()
    finally:
        stop.set()
        await writer
        await churner
