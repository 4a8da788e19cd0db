"""The Python client (deltagate_client): the HTTP client against one pod, and a live subscription
against two pods behind a proxy while one is killed, restarted, and the other drained: it must
yield exactly the matching events of the log, in order, none twice."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import random
from typing import Any

import pytest
from deltagate_client import DeltaGateClient, DeltaGateError, Subscriber, backoff

from broker import Filter
from tests.clients.conftest import FAST
from tests.clients.proxy import Proxy
from tests.e2e.test_streaming import expected, log_entries
from tests.harness import spawn_pods

STORE = "pyclient"
TYPES = ["order.placed", "order.shipped", "user.created", "payment.created"]

pytestmark = pytest.mark.timeout(60)


async def test_http_client(redis_url: str, pods) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST)
    async with DeltaGateClient(pod.url) as client:
        created = await client.create_store("pyhttp", description="a test store")
        assert created["name"] == "pyhttp"
        with pytest.raises(DeltaGateError) as exists:
            await client.create_store("pyhttp")
        assert (exists.value.code, exists.value.status) == ("EVENT_STORE_ALREADY_EXISTS", 409)
        result = await client.append(
            "pyhttp",
            "order-1",
            [{"type": "order.placed", "data": {"n": 1}}, {"type": "order.shipped", "data": {}}],
            expected_version="no_stream",
        )
        assert result["eventsWritten"] == 2 and result["globalPosition"] == 2
        with pytest.raises(DeltaGateError) as conflict:
            await client.append(
                "pyhttp", "order-1", [{"type": "x", "data": {}}], expected_version=0
            )
        assert conflict.value.code == "STREAM_VERSION_CONFLICT"
        assert conflict.value.details["currentVersion"] == 2
        again = await client.append(
            "pyhttp", "order-2", [{"type": "user.created", "data": None}], idempotency_key="k-1"
        )
        assert (
            await client.append(
                "pyhttp", "order-2", [{"type": "user.created", "data": None}], idempotency_key="k-1"
            )
            == again
        )
        page = await client.read_stream("pyhttp", "order-1")
        assert [e["type"] for e in page["events"]] == ["order.placed", "order.shipped"]
        assert page["currentStreamVersion"] == 2
        assert [e["streamPosition"] async for e in client.iter_stream("pyhttp", "order-1")] == [
            0,
            1,
        ]
        found = await client.query("pyhttp", types="order.*", include_count=True)
        assert [e["globalPosition"] for e in found["events"]] == [1, 2]
        assert found["pagination"]["total"] == 2
        streams = await client.list_streams("pyhttp")
        assert {s["streamId"] for s in streams["streams"]} == {"order-1", "order-2"}
        assert "pyhttp" in [s["name"] for s in await client.list_stores()]
        stats = (await client.get_store("pyhttp"))["statistics"]
        assert stats["totalEvents"] == 3
        await client.ensure_store("pyhttp")
        await client.ensure_store("pyhttp2")
        deleted = await client.delete_store("pyhttp")
        assert deleted["success"] is True
        with pytest.raises(DeltaGateError) as missing:
            await client.get_store("pyhttp")
        assert (missing.value.code, missing.value.status) == ("EVENT_STORE_NOT_FOUND", 404)
        assert not missing.value.temporary

    async with DeltaGateClient("http://127.0.0.1:9", timeout=2) as down:
        with pytest.raises(DeltaGateError) as unreachable:
            await down.list_stores()
    assert unreachable.value.code == "CONNECTION_ERROR" and unreachable.value.temporary


def test_backoff_is_full_jitter_under_a_cap() -> None:
    samples = [backoff(attempt, 1.0, 30.0) for attempt in range(12) for _ in range(50)]
    assert all(0 <= s <= 30.0 for s in samples)
    assert max(backoff(0, 1.0, 30.0) for _ in range(200)) <= 1.0
    assert max(backoff(10, 1.0, 30.0) for _ in range(200)) > 15  # capped, not stuck low


async def append(base_url: str, stream: str, events: list[dict[str, Any]], key: str) -> None:
    async with DeltaGateClient(base_url, timeout=5) as client:
        for _ in range(200):
            try:
                await client.append(STORE, stream, events, idempotency_key=key)
                return
            except DeltaGateError as exc:
                if not exc.temporary:
                    raise
                await asyncio.sleep(0.05)
    raise AssertionError("append kept failing")


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_subscription_yields_exactly_the_log_across_restarts(
    redis_url: str, pods, proxies, transport
) -> None:
    a, b = spawn_pods(pods, redis_url, 2, **FAST)
    proxy = Proxy(a.port).start()
    proxies.append(proxy)
    rng = random.Random(5)
    for i in range(3):
        await append(b.url, f"s-{i}", [{"type": rng.choice(TYPES), "data": {}}] * 4, f"h-{i}")

    client = DeltaGateClient(proxy.url)
    states: list[str] = []
    subs: dict[str, tuple[Subscriber, Filter, int]] = {
        "all": (
            client.subscribe("*", store=STORE, position="earliest", transport=transport),
            Filter.parse("*"),
            0,
        ),
        "orders": (
            client.subscribe(
                "order.*", store=STORE, position=5, on_state=states.append, transport=transport
            ),
            Filter.parse("order.*"),
            5,
        ),
        "s2": (
            client.subscribe(
                ["user.*", "payment.*"],
                store=STORE,
                stream_id="s-2",
                position=0,
                transport=transport,
            ),
            Filter.parse(["user.*", "payment.*"], "s-2"),
            0,
        ),
    }
    for sub, _, _ in subs.values():
        sub.initial_delay = 0.2  # keep the test short; the default is 1 s
    got: dict[str, list[int]] = {name: [] for name in subs}

    async def consume(name: str, sub: Subscriber) -> None:
        async with sub:
            async for event in sub:
                got[name].append(event["globalPosition"])

    tasks = [asyncio.create_task(consume(n, s)) for n, (s, _, _) in subs.items()]
    batch = 0

    async def write(n: int, url: str) -> None:
        nonlocal batch
        for _ in range(n):
            events = [{"type": rng.choice(TYPES), "data": {"b": batch}} for _ in range(4)]
            await append(url, f"s-{batch % 3}", events, f"b-{batch}")
            batch += 1
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(_until(lambda: len(got["all"]) >= 12), 20)
        await write(20, a.url)
        a.kill()  # 1006 for every client of pod A
        proxy.retarget(b.port)
        await write(20, b.url)
        await asyncio.to_thread(a.start)  # pod A back on its port
        proxy.retarget(a.port, drop=False)
        await write(10, b.url)
        await asyncio.to_thread(b.stop)  # SIGTERM: B drains its sockets with 1012
        await write(10, a.url)
        entries = log_entries(redis_url, STORE)
        assert [e[0] for e in entries] == list(range(1, 12 + 60 * 4 + 1))
        for name, (_, flt, start) in subs.items():
            want = expected(entries, flt, start)
            await asyncio.wait_for(_until(lambda n=name, w=want: len(got[n]) >= len(w)), 20)
        await asyncio.sleep(0.3)  # anything extra would arrive now
        for name, (_, flt, start) in subs.items():
            assert got[name] == expected(entries, flt, start), name
        assert states.count("reconnecting") >= 2, states
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()


async def _until(predicate: Any) -> None:
    while not predicate():  # noqa: ASYNC110 (polls plain state the consumers update)
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_follow_false_stops_at_the_head_and_errors_are_final(
    redis_url: str, pods, transport
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST, DELTAGATE_AUTO_CREATE_STORES="false")
    async with DeltaGateClient(pod.url) as client:
        client.subscribe = functools.partial(client.subscribe, transport=transport)  # type: ignore[method-assign]
        await client.create_store("pyfollow")
        for i in range(3):
            await client.append("pyfollow", f"s-{i}", [{"type": "t.x", "data": {"i": i}}])
        history = [
            e["globalPosition"]
            async for e in client.subscribe(
                "*", store="pyfollow", position="earliest", follow=False
            )
        ]
        assert history == [1, 2, 3]
        assert [e async for e in client.subscribe("*", store="pyfollow", follow=False)] == []
        with pytest.raises(DeltaGateError) as no_store:
            async for _ in client.subscribe("*", store="nosuchstore"):
                pass
        assert no_store.value.code == "EVENT_STORE_NOT_FOUND"
        with pytest.raises(DeltaGateError) as bad_filter:
            async for _ in client.subscribe("", store="pyfollow"):
                pass
        assert bad_filter.value.code == "VALIDATION_ERROR"
        # Final: retrying cannot help (they said temporary, with no status).
        assert (no_store.value.status, no_store.value.temporary) == (404, False)
        assert (bad_filter.value.status, bad_filter.value.temporary) == (400, False)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_aclose_from_another_task_ends_its_iteration(redis_url: str, pods, transport) -> None:
    """``aclose()`` while an ``async for`` runs in another task (waiting for the next event, or
    for its next connection attempt) ends that loop; it failed with "asynchronous generator is
    already running" and the loop went on."""
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST, DELTAGATE_AUTO_CREATE_STORES="false")
    async with DeltaGateClient(pod.url) as client:
        await client.create_store("pyaclose")
        await client.append("pyaclose", "s", [{"type": "t.x", "data": {}}])
        subscriber = client.subscribe(
            "*", store="pyaclose", position="earliest", transport=transport
        )
        got: list[int] = []

        async def consume() -> None:
            async for event in subscriber:
                got.append(event["globalPosition"])

        task = asyncio.create_task(consume())
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.02)
        assert got == [1]  # now waiting for the next event, in the other task
        await subscriber.aclose()
        await asyncio.wait_for(task, 5)  # the loop ended, without an error
        assert subscriber.state == "closed"
        await client.append("pyaclose", "s", [{"type": "t.x", "data": {}}])
        await asyncio.sleep(0.2)
        assert got == [1]

        # Waiting to reconnect (the pod refuses it for now): aclose() cuts the wait short.
        waiting = client.subscribe("*", store="pyaclose", transport=transport, initial_delay=30)
        pod.kill()
        task = asyncio.create_task(consume_all(waiting))
        for _ in range(200):
            if waiting.state == "reconnecting":
                break
            await asyncio.sleep(0.02)
        assert waiting.state == "reconnecting"
        await waiting.aclose()
        await asyncio.wait_for(task, 5)


async def consume_all(subscriber: Any) -> None:
    async for _ in subscriber:
        pass


def _open_streams(metrics: str) -> float:
    return sum(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("deltagate_ws_connections ", "deltagate_sse_connections "))
    )


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_break_out_of_async_for_closes_the_connection(
    redis_url: str, pods, transport
) -> None:
    """The documented loop without ``async with``: each ``break`` closes its connection at
    once, cleanly (no task fails), and a later loop over the same subscriber resumes after its
    cursor. The server's reason for a refusal reaches the error."""
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST, DELTAGATE_AUTO_CREATE_STORES="false")
    failures: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: failures.append(context))
    async with DeltaGateClient(pod.url) as client:
        await client.create_store("pybreak")
        for i in range(3):
            await client.append("pybreak", "s", [{"type": "t.x", "data": {"i": i}}])
        subscriber = client.subscribe(
            "*", store="pybreak", position="earliest", transport=transport
        )
        firsts = []
        for _ in range(3):
            async for event in subscriber:
                firsts.append(event["globalPosition"])
                break
        assert firsts == [1, 2, 3]  # each loop resumed after the cursor
        for _ in range(100):
            if _open_streams((await client.http.get(f"{pod.url}/metrics")).text) == 0:
                break
            await asyncio.sleep(0.05)
        assert _open_streams((await client.http.get(f"{pod.url}/metrics")).text) == 0
        with pytest.raises(DeltaGateError) as no_store:
            async for _ in client.subscribe("*", store="nosuchstore", transport=transport):
                pass
        assert no_store.value.code == "EVENT_STORE_NOT_FOUND"
        assert "nosuchstore" in no_store.value.message, no_store.value.message
    # The iterations a break dropped are closed by tasks asyncio's finalizer schedules: let
    # them finish in this test's loop, or their sockets outlive it (a ResourceWarning that
    # failed a later test in CI).
    gc.collect()
    await asyncio.sleep(0.5)
    assert not failures, failures


async def test_a_store_recreated_under_a_subscriber_is_a_reset_then_its_new_history(
    redis_url: str, pods
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1, **FAST)
    notices: list[dict[str, Any]] = []
    async with DeltaGateClient(pod.url) as client:
        for n in range(3):
            await client.append("phoenix", "s", [{"type": "old.thing", "data": {"n": n}}])
        seen: list[tuple[int, str]] = []
        subscriber = client.subscribe(
            "*", store="phoenix", position="earliest", on_notice=notices.append
        )
        async with subscriber:
            async for event in subscriber:
                seen.append((event["globalPosition"], event["type"]))
                if len(seen) == 3:
                    await client.delete_store("phoenix")
                    for _ in range(2):
                        await client.append("phoenix", "s", [{"type": "new.thing", "data": {}}])
                if len(seen) == 5:
                    break
    assert seen == [
        (1, "old.thing"),
        (2, "old.thing"),
        (3, "old.thing"),
        (1, "new.thing"),
        (2, "new.thing"),
    ]
    assert [(n["type"], n["reason"]) for n in notices] == [("reset", "store-recreated")]
    assert subscriber.cursor == 2 and subscriber.epoch == notices[0]["epoch"]


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_get_token_keeps_a_subscription_on_short_tokens(
    redis_url: str, pods, transport, caplog
) -> None:
    """Short tokens: a WebSocket refreshes its token over the open socket (one connection
    throughout); an SSE stream reconnects with a fresh token (no grace), nothing lost.

    A token's exp is whole seconds, so an N-second token lives N-1 to N s, and the client
    refreshes it half its life before it expires. The WebSocket's tokens live 5 s with a 2 s grace:
    refreshed at least 2 s before, a refresh must come over 4 s late to lose the connection (full
    runs on a loaded host lost it with 2-second tokens and no grace, then with 3-second and
    5-second ones and no grace). Without refreshes the first token's connection would still be
    closed within the test's 8 s (at most 5 + 2). SSE's tokens live 2 s (three of them within its
    6 s)."""
    websocket = transport == "websocket"
    admin = "admin-secret-for-python-refresh"
    (pod,) = spawn_pods(
        pods,
        redis_url,
        1,
        **FAST,
        DELTAGATE_AUTH="enabled",
        DELTAGATE_ADMIN_KEY=admin,
        DELTAGATE_TOKEN_SECRET="token-secret-for-python-refresh-0123456789",
        DELTAGATE_TOKEN_EXPIRY_GRACE="2" if websocket else "0",
    )
    caplog.set_level(logging.INFO, logger="deltagate.client")  # a reconnect logs its close code
    async with DeltaGateClient(pod.url, api_key=admin) as admin_client:
        await admin_client.create_store("pytokens")
        minted = 0
        ttl, events = (5, 8) if websocket else (2, 6)

        async def get_token() -> dict[str, Any]:
            nonlocal minted
            minted += 1
            return await admin_client.mint_token("pytokens", ttl_seconds=ttl)

        browser = DeltaGateClient(pod.url)
        states: list[str] = []
        sub = browser.subscribe(
            "*",
            store="pytokens",
            position="earliest",
            transport=transport,
            get_token=get_token,
            on_state=states.append,
        )
        sub.initial_delay = 0.1
        got: list[int] = []

        async def consume() -> None:
            async with sub:
                async for event in sub:
                    got.append(event["globalPosition"])

        task = asyncio.create_task(consume())
        try:
            for i in range(events):
                await admin_client.append("pytokens", f"s-{i}", [{"type": "a.b", "data": {}}])
                await asyncio.sleep(1)
            await asyncio.wait_for(_until(lambda: len(got) >= events), 10)
            await asyncio.sleep(0.3)
            assert got == list(range(1, events + 1))
            assert minted >= 3
            if websocket:
                assert "reconnecting" not in states, (states, caplog.messages)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await browser.aclose()
