"""Deliveries by real dispatcher processes to real HTTP receivers: failing, slow, refusing and
redirecting endpoints; a replica killed mid-delivery; dead letters and redrive; pause, resume
and auto-pause; a graceful drain."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from broker.keys import WebhookKeys
from tests.harness import RedisServer, wait_for
from tests.webhooks.conftest import STORE
from tests.webhooks.support import STEADY_LEASE, DispatcherProcess, Receiver, Reply, TestClient

Spawn = Callable[..., DispatcherProcess]
CONNECTION_FAILED = "could not connect (no HTTP answer)"
Make = Callable[..., Receiver]
FAST_RETRIES = {"maxAttempts": 50, "backoffSeconds": 0.05}


def subscribe(api: TestClient, receiver: Receiver, event_filter: Any = "*", **config: Any) -> str:
    body = {
        "eventFilter": event_filter,
        "subscriber": {"type": "webhook", "config": {"url": receiver.url, **config}},
    }
    response = api.post(f"/event-stores/{STORE}/subscribe", json=body)
    assert response.status_code == 201, response.text
    sub_id = str(response.json()["subscriptionId"])
    receiver.secrets[sub_id] = response.json()["signingSecret"]
    return sub_id


def append(
    api: TestClient, n: int, streams: int, start: int = 0, batch: int = 1
) -> list[dict[str, Any]]:
    """Events ``start`` .. ``start + n - 1``, event i on stream ``order-{i % streams}`` with
    alternating types, appended ``batch`` per request; returns the store's whole log."""
    pending: dict[str, list[dict[str, Any]]] = {}

    def flush(stream: str) -> None:
        response = api.post(
            f"/event-stores/{STORE}/streams/{stream}", json={"events": pending.pop(stream)}
        )
        assert response.status_code == 201, response.text

    for i in range(start, start + n):
        stream = f"order-{i % streams}"
        kind = "order.placed" if i % 2 == 0 else "order.shipped"
        pending.setdefault(stream, []).append({"type": kind, "data": {"i": i}})
        if len(pending[stream]) >= batch:
            flush(stream)
    for stream in list(pending):
        flush(stream)
    events = api.get(f"/event-stores/{STORE}/events", params={"limit": 1000}).json()["events"]
    return list(events)


def subscription(api: TestClient, sub_id: str) -> dict[str, Any]:
    response = api.get(f"/event-stores/{STORE}/subscriptions/{sub_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def dead_letters(api: TestClient, sub_id: str) -> dict[str, Any]:
    response = api.get(f"/event-stores/{STORE}/subscriptions/{sub_id}/dead-letters")
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.timeout(45)
def test_every_event_arrives_in_order_despite_misbehaving_endpoints(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn
) -> None:
    flaky = receivers(lambda _, n: Reply(500) if n <= 2 else Reply()).start()
    # The slow endpoint answers each event's first attempt after the 0.7 s timeout, the retry at
    # once (a timeout short enough for a loaded host to miss an answer sent at once repeats it).
    slow = receivers(lambda _, n: Reply(200, delay=1.5, late=True) if n == 1 else Reply()).start()
    moved = receivers(
        lambda _, n: Reply(302, headers={"location": "/moved"}) if n <= 2 else Reply()
    )
    moved.start()
    shipped = receivers().start()
    refused = receivers()  # not listening yet: connections are refused
    subs = {
        "flaky": subscribe(api, flaky, retryPolicy=FAST_RETRIES),
        "slow": subscribe(api, slow, timeout=700, retryPolicy=FAST_RETRIES),  # milliseconds
        "moved": subscribe(api, moved, retryPolicy=FAST_RETRIES),
        "shipped": subscribe(api, shipped, "*.shipped", retryPolicy=FAST_RETRIES),
        "refused": subscribe(api, refused, ["order.*"], retryPolicy=FAST_RETRIES),
    }
    dispatcher = dispatchers(**STEADY_LEASE).wait_ready()
    events = append(api, 40, streams=4)
    everything = {e["globalPosition"] for e in events}
    expected = {
        "flaky": everything,
        "slow": everything,
        "moved": everything,
        "shipped": {e["globalPosition"] for e in events if e["type"] == "order.shipped"},
        "refused": everything,
    }
    wait_for(
        lambda: subscription(api, subs["refused"])["lastError"] == CONNECTION_FAILED,
        timeout=10,
        what="a refused connection",
    )
    refused.start()
    by_name = {"flaky": flaky, "slow": slow, "moved": moved, "shipped": shipped, "refused": refused}
    for name, receiver in by_name.items():
        wait_for(
            lambda r=receiver, n=name: r.positions(subs[n]) == expected[n],
            timeout=30,
            what=f"every event at the {name} endpoint",
        )
        assert receiver.bad_signatures == 0, name
        receiver.assert_in_order(subs[name], strictly=True)
    assert moved.redirects_followed == 0
    for name, sub_id in subs.items():
        wait_for(
            lambda s=sub_id: subscription(api, s)["lastProcessedEventGlobalPosition"] == 40,
            timeout=5,
            what=f"{name}'s progress",
        )
    body = subscription(api, subs["moved"])
    assert body["lag"] == 0 and body["status"] == "active"
    assert body["lastError"].startswith("HTTP 302"), body
    # A timeout reads like any failure without an HTTP answer (no port-scanner oracle).
    assert subscription(api, subs["slow"])["lastError"] == CONNECTION_FAILED
    assert subscription(api, subs["flaky"])["lastError"] == "HTTP 500"
    metrics = dispatcher.metrics()
    assert metrics['deltagate_webhook_deliveries_total{result="success"}'] >= 180
    assert metrics['deltagate_webhook_deliveries_total{result="failure"}'] >= 160
    assert metrics['deltagate_webhook_deliveries_total{result="timeout"}'] >= 40
    assert metrics["deltagate_webhook_retries_total"] >= 200
    assert metrics["deltagate_webhook_attempt_duration_seconds_count"] >= 380
    assert metrics["deltagate_webhook_subscriptions_owned"] == 5
    assert metrics["deltagate_webhook_lag_events_max"] == 0


@pytest.mark.timeout(45)
def test_a_replica_killed_mid_delivery_is_taken_over(
    api: TestClient,
    store: str,
    receivers: Make,
    dispatchers: Spawn,
    redis_server: RedisServer,
) -> None:
    receiver = receivers(lambda _, __: Reply(200, delay=0.02)).start()
    sub_id = subscribe(api, receiver)
    replicas = [dispatchers(DELTAGATE_DISPATCHER_MAX_IN_FLIGHT="4") for _ in range(2)]
    for replica in replicas:
        replica.wait_ready()
    events = append(api, 200, streams=10, batch=5)
    wait_for(lambda: len(receiver.of(sub_id)) >= 40, timeout=15, what="deliveries under way")
    lease = WebhookKeys(STORE).lease(sub_id)
    holder = int(redis_server.client().get(lease).split(":")[1])
    (victim,) = [r for r in replicas if r.pid == holder]
    (survivor,) = [r for r in replicas if r.pid != holder]
    victim.kill()
    killed_at = time.monotonic()
    everything = {e["globalPosition"] for e in events}
    wait_for(lambda: receiver.positions(sub_id) == everything, timeout=30, what="all delivered")
    taken_over = time.monotonic() - killed_at
    assert taken_over < 10, f"took {taken_over:.1f} s to take over"
    assert int(redis_server.client().get(lease).split(":")[1]) == survivor.pid
    # At most the requests in flight when it died are delivered twice, the last of each stream
    # (a stream's next waits for its save): never a stream's older event after a newer one.
    assert receiver.duplicates(sub_id) <= 4, receiver.duplicates(sub_id)
    receiver.assert_in_order(sub_id, strictly=False)
    repeats = Counter(d.event["streamId"] for d in receiver.of(sub_id))
    assert all(n <= 20 + 1 for n in repeats.values()), repeats
    assert receiver.bad_signatures == 0
    wait_for(
        lambda: subscription(api, sub_id)["lastProcessedEventGlobalPosition"] == 200,
        timeout=5,
        what="progress saved",
    )


@pytest.mark.timeout(45)
def test_dead_letters_after_the_last_attempt_and_redrive(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn
) -> None:
    healthy = {"now": False}
    receiver = receivers(lambda _, __: Reply() if healthy["now"] else Reply(500)).start()
    sub_id = subscribe(api, receiver, retryPolicy={"maxAttempts": 3, "backoffSeconds": 0.05})
    once = subscribe(api, receiver, "order.*", retryPolicy={"maxAttempts": 1})
    dispatcher = dispatchers(**STEADY_LEASE).wait_ready()
    events = append(api, 3, streams=2)
    wait_for(lambda: dead_letters(api, sub_id)["totalCount"] == 3, timeout=15, what="3 dead")
    wait_for(lambda: dead_letters(api, once)["totalCount"] == 3, timeout=5, what="3 dead")
    single = subscription(api, once)
    assert single["lastError"] == "HTTP 500", "the one attempt is recorded too"
    assert [d["attempts"] for d in dead_letters(api, once)["deadLetters"]] == [1, 1, 1]
    api.delete(f"/event-stores/{STORE}/subscriptions/{once}")
    letters = dead_letters(api, sub_id)["deadLetters"]
    assert [d["event"]["globalPosition"] for d in letters] == [1, 2, 3]
    for letter, event in zip(letters, events, strict=True):
        assert letter["event"] == event
        assert letter["attempts"] == 3
        assert letter["lastError"] == "HTTP 500"
        assert letter["failedAt"].endswith("Z")
    assert receiver.requests == 9 + 3 and not receiver.accepted
    body = subscription(api, sub_id)
    assert body["lastProcessedEventGlobalPosition"] == 3, "it moved on"
    assert body["deadLetterCount"] == 3 and body["lastError"] == "HTTP 500"

    healthy["now"] = True
    second = events[1]["eventId"]
    base = f"/event-stores/{STORE}/subscriptions/{sub_id}/dead-letters"
    response = api.post(f"{base}/{second}/redrive")
    assert response.status_code == 200 and response.json()["redriven"] == 1, response.text
    wait_for(lambda: receiver.positions(sub_id) == {2}, timeout=10, what="the redriven one")
    assert dead_letters(api, sub_id)["totalCount"] == 2
    assert api.post(f"{base}/{second}/redrive").json()["error"] == "NOT_FOUND"
    response = api.post(f"{base}/redrive")
    assert response.status_code == 200 and response.json()["redriven"] == 2
    wait_for(lambda: receiver.positions(sub_id) == {1, 2, 3}, timeout=10, what="all redriven")
    wait_for(lambda: dead_letters(api, sub_id)["totalCount"] == 0, timeout=5, what="list empty")
    assert receiver.duplicates(sub_id) == 0 and receiver.bad_signatures == 0
    append(api, 1, streams=2, start=3)
    wait_for(lambda: 4 in receiver.positions(sub_id), timeout=10, what="a new event")
    metrics = dispatcher.metrics()
    assert metrics['deltagate_webhook_deliveries_total{result="dead_letter"}'] == 6
    assert metrics["deltagate_webhook_dead_letters_total"] == 6
    assert metrics["deltagate_webhook_retries_total"] == 6
    assert metrics["deltagate_redis_errors_total"] == 0  # (the family is there; Redis never failed)


@pytest.mark.timeout(45)
def test_pause_resume_auto_pause_and_delete(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn
) -> None:
    failing = {"now": False}
    receiver = receivers(lambda _, __: Reply(503) if failing["now"] else Reply()).start()
    sub_id = subscribe(api, receiver, retryPolicy={"maxAttempts": 100, "backoffSeconds": 0.02})
    dispatchers(DELTAGATE_WEBHOOK_AUTO_PAUSE_SECONDS="0.5").wait_ready()
    path = f"/event-stores/{STORE}/subscriptions/{sub_id}"
    append(api, 1, streams=1)
    wait_for(lambda: receiver.positions(sub_id) == {1}, timeout=10, what="the first event")

    paused = api.post(f"{path}/pause", json={"reason": "maintenance"}).json()
    assert paused["status"] == "paused" and paused["statusReason"] == "maintenance"
    time.sleep(0.6)  # the dispatcher reloads it within its poll interval (0.2 s)
    append(api, 2, streams=1, start=1)
    time.sleep(0.6)
    assert receiver.positions(sub_id) == {1}
    assert subscription(api, sub_id)["lag"] == 2
    resumed = api.post(f"{path}/resume").json()
    assert resumed["status"] == "active" and resumed["statusReason"] is None
    wait_for(lambda: receiver.positions(sub_id) == {1, 2, 3}, timeout=10, what="after resume")

    failing["now"] = True
    append(api, 1, streams=1, start=3)
    wait_for(
        lambda: subscription(api, sub_id)["status"] == "auto-paused", timeout=15, what="auto-pause"
    )
    body = subscription(api, sub_id)
    assert "HTTP 503" in body["statusReason"], body
    tried = receiver.requests
    time.sleep(0.5)
    assert receiver.requests == tried, "an auto-paused subscription sends nothing"
    failing["now"] = False
    api.post(f"{path}/resume")
    wait_for(lambda: receiver.positions(sub_id) == {1, 2, 3, 4}, timeout=10, what="after fix")

    assert api.delete(path).status_code == 200
    time.sleep(0.5)
    append(api, 1, streams=1, start=4)
    time.sleep(0.6)
    assert 5 not in receiver.positions(sub_id), "a deleted subscription delivers nothing"
    assert receiver.duplicates(sub_id) == 0


@pytest.mark.timeout(45)
def test_sigterm_lets_in_flight_deliveries_finish_then_exits_0(
    api: TestClient,
    store: str,
    receivers: Make,
    dispatchers: Spawn,
    redis_server: RedisServer,
) -> None:
    receiver = receivers(lambda _, __: Reply(200, delay=0.3)).start()
    sub_id = subscribe(api, receiver)
    first = dispatchers(DELTAGATE_DISPATCHER_MAX_IN_FLIGHT="4").wait_ready()
    events = append(api, 24, streams=6)
    wait_for(lambda: receiver.concurrent >= 4, timeout=10, what="requests in flight")
    started = time.monotonic()
    assert first.stop() == 0, first.log()
    assert time.monotonic() - started < 5
    assert receiver.concurrent == 0, "in-flight requests were answered before the exit"
    assert receiver.max_concurrent <= 4
    assert redis_server.client().get(WebhookKeys(STORE).lease(sub_id)) is None, "released"
    delivered = len(receiver.of(sub_id))
    assert 4 <= delivered < 24
    assert subscription(api, sub_id)["lastProcessedEventGlobalPosition"] >= 1
    dispatchers().wait_ready()
    everything = {e["globalPosition"] for e in events}
    wait_for(lambda: receiver.positions(sub_id) == everything, timeout=20, what="the rest")
    assert receiver.duplicates(sub_id) == 0, "a drained replica saved all it delivered"
    receiver.assert_in_order(sub_id, strictly=True)


@pytest.mark.timeout(45)
def test_a_hanging_request_holds_back_its_stream_only(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn
) -> None:
    """A save waits a moment for the requests in flight, to record them together; a request
    that hangs must not hold back the save other streams' next events wait for (HOLD_DELAY):
    another stream's 20 events, each behind its predecessor's save, all arrive meanwhile."""
    hung: set[str] = set()

    def hang_the_first(webhook_id: str, _: int) -> Reply:
        if not hung or webhook_id in hung:
            hung.add(webhook_id)
            return Reply(200, delay=8.0)
        return Reply()

    receiver = receivers(hang_the_first).start()
    sub_id = subscribe(api, receiver, timeout=15_000)
    dispatchers(**STEADY_LEASE).wait_ready()
    first = api.post(
        f"/event-stores/{STORE}/streams/slow", json={"events": [{"type": "a.b", "data": {}}]}
    )
    assert first.status_code == 201, first.text
    wait_for(lambda: receiver.concurrent == 1, timeout=10, what="the hanging request")
    started = time.monotonic()
    events = append(api, 20, streams=1)
    others = {e["globalPosition"] for e in events if e["streamId"] == "order-0"}
    assert len(others) == 20
    wait_for(lambda: others <= receiver.positions(sub_id), timeout=5, what="the other stream")
    assert time.monotonic() - started < 6
    assert 1 not in receiver.positions(sub_id), "the first request still hangs"
    receiver.assert_in_order(sub_id, strictly=True)
    wait_for(lambda: 1 in receiver.positions(sub_id), timeout=15, what="the hanging one")
