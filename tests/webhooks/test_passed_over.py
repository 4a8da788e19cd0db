"""Events a subscription reads past without delivering them: those that do not match its filter,
and those created before the time it starts from (contract section 9, ``position: {"time"}``).
Its progress (``lastProcessedEventGlobalPosition``, so ``lag``) moves past them without a
delivery, and a time still ahead holds back the events appended before it. Real Redis, a real
dispatcher process, real receivers on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.keys import WebhookKeys
from tests.harness import RedisServer, wait_for
from tests.webhooks.conftest import STORE
from tests.webhooks.support import STEADY_LEASE, DispatcherProcess, Receiver, TestClient
from tests.webhooks.test_delivery import append, subscription

Spawn = Callable[..., DispatcherProcess]
Make = Callable[..., Receiver]


def subscribe(api: TestClient, receiver: Receiver, **fields: Any) -> str:
    body = {"subscriber": {"type": "webhook", "config": {"url": receiver.url}}, **fields}
    response = api.post(f"/event-stores/{STORE}/subscribe", json=body)
    assert response.status_code == 201, response.text
    sub_id = str(response.json()["subscriptionId"])
    receiver.secrets[sub_id] = response.json()["signingSecret"]
    return sub_id


def write(api: TestClient, stream: str, *events: dict[str, Any]) -> int:
    """Append ``events`` to ``stream``: the last one's globalPosition."""
    response = api.post(f"/event-stores/{STORE}/streams/{stream}", json={"events": list(events)})
    assert response.status_code == 201, response.text
    return int(response.json()["globalPosition"])


def progress(api: TestClient, sub_id: str) -> int:
    return int(subscription(api, sub_id)["lastProcessedEventGlobalPosition"])


def start_time(redis_server: RedisServer, sub_id: str) -> str | None:
    """The start time the record still keeps (none once the dispatcher read past it)."""
    value = redis_server.client().hget(WebhookKeys(STORE).record(sub_id), "startTime")
    return None if value is None else str(value)


@pytest.mark.timeout(60)
def test_progress_moves_past_events_that_do_not_match(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn
) -> None:
    history = append(api, 300, streams=3)  # more than a page of the log
    receiver = receivers().start()
    subs = {
        "stream": subscribe(api, receiver, eventFilter="*", streamId="X"),
        "types": subscribe(api, receiver, eventFilter="a.*"),
        "match": subscribe(api, receiver, eventFilter="*", match={"data": {"k": 1}}),
    }
    nothing = subscribe(api, receiver, eventFilter="none.*", position="earliest")
    dispatcher = dispatchers(**STEADY_LEASE).wait_ready()
    matching = write(api, "X", {"type": "a.one", "data": {"k": 1}})
    assert matching == len(history) + 1
    for i in range(5):
        head = write(api, "Y", {"type": "b.other", "data": {"k": 2, "i": i}})
    for name, sub_id in subs.items():
        wait_for(lambda s=sub_id: receiver.positions(s) == {matching}, timeout=15, what=name)
    for sub_id in [*subs.values(), nothing]:
        wait_for(lambda s=sub_id: progress(api, s) == head, timeout=10, what="progress at head")
        assert subscription(api, sub_id)["lag"] == 0
    wait_for(
        lambda: dispatcher.metrics()["deltagate_webhook_lag_events_max"] == 0,
        timeout=10,
        what="the dispatcher's lag metric at 0",
    )
    assert receiver.positions(nothing) == set()
    time.sleep(0.5)  # (more than the dispatcher's poll interval: nothing comes again)
    for sub_id in subs.values():
        assert len(receiver.of(sub_id)) == 1, "delivered once"
    assert receiver.bad_signatures == 0


@pytest.mark.timeout(60)
def test_a_time_ahead_passes_over_the_events_created_before_it(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn, redis_server: RedisServer
) -> None:
    append(api, 2, streams=2)
    receiver = receivers().start()
    dispatchers(**STEADY_LEASE).wait_ready()  # (first: its start-up may take seconds on CI)
    start = datetime.now(UTC) + timedelta(seconds=3)
    sub_id = subscribe(
        api, receiver, eventFilter="*", position={"time": start.isoformat().replace("+00:00", "Z")}
    )
    assert progress(api, sub_id) == 2, "the head: no event is created at or after the time yet"
    before = append(api, 4, streams=2, start=2)  # after the subscription, before its time
    assert datetime.fromisoformat(before[-1]["createdAt"]) < start, "(the host was too slow)"
    wait_for(lambda: progress(api, sub_id) == 6, timeout=10, what="progress past them")
    assert receiver.requests == 0
    assert start_time(redis_server, sub_id) is not None, "still ahead"
    wait_for(lambda: datetime.now(UTC) >= start, timeout=15, what="the time")
    after = append(api, 3, streams=2, start=6)
    assert datetime.fromisoformat(after[6]["createdAt"]) >= start
    wait_for(lambda: receiver.positions(sub_id) == {7, 8, 9}, timeout=15, what="events 7..9")
    wait_for(lambda: progress(api, sub_id) == 9, timeout=10, what="progress saved")
    assert receiver.duplicates(sub_id) == 0
    receiver.assert_in_order(sub_id)
    assert start_time(redis_server, sub_id) is None, "dropped once the start was read"


@pytest.mark.timeout(60)
def test_a_time_past_starts_at_the_first_event_created_at_or_after_it(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn, redis_server: RedisServer
) -> None:
    events: list[dict[str, Any]] = []
    for i in range(6):
        events = append(api, 1, streams=2, start=i)
        time.sleep(0.003)  # distinct createdAt milliseconds
    boundary = events[3]["createdAt"]
    assert events[2]["createdAt"] < boundary
    receiver = receivers().start()
    sub_id = subscribe(api, receiver, eventFilter="*", position={"time": boundary})
    assert progress(api, sub_id) == 3
    dispatchers(**STEADY_LEASE).wait_ready()
    wait_for(lambda: receiver.positions(sub_id) == {4, 5, 6}, timeout=15, what="events 4..6")
    append(api, 2, streams=2, start=6)
    wait_for(lambda: receiver.positions(sub_id) == {4, 5, 6, 7, 8}, timeout=15, what="7 and 8")
    wait_for(lambda: progress(api, sub_id) == 8, timeout=10, what="progress saved")
    assert receiver.duplicates(sub_id) == 0
    assert start_time(redis_server, sub_id) is None
