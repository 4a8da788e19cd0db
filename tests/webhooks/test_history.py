"""Progress that is not a position of the store's history as it is now (contract section 10):
beyond the head, or of a store deleted and created again. The dispatcher auto-pauses such a
subscription with ``statusDetails`` naming the rewind and delivers nothing; an operator resumes it
from a position of the current history. Real Redis, a real dispatcher process, a real receiver."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import wait_for
from tests.webhooks.conftest import STORE
from tests.webhooks.support import DispatcherProcess, Receiver, TestClient
from tests.webhooks.test_delivery import append, subscription

Spawn = Callable[..., DispatcherProcess]
Make = Callable[..., Receiver]


def subscribe_at(api: TestClient, receiver: Receiver, position: Any) -> str:
    body = {
        "eventFilter": "*",
        "subscriber": {"type": "webhook", "config": {"url": receiver.url}},
        "position": position,
    }
    response = api.post(f"/event-stores/{STORE}/subscribe", json=body)
    assert response.status_code == 201, response.text
    sub_id = str(response.json()["subscriptionId"])
    receiver.secrets[sub_id] = response.json()["signingSecret"]
    return sub_id


def resume(api: TestClient, sub_id: str, body: Any = None) -> dict[str, Any]:
    url = f"/event-stores/{STORE}/subscriptions/{sub_id}/resume"
    response = api.post(url) if body is None else api.post(url, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def auto_paused(api: TestClient, sub_id: str) -> dict[str, Any] | None:
    body = subscription(api, sub_id)
    return body if body["status"] == "auto-paused" else None


@pytest.mark.timeout(45)
def test_progress_beyond_the_head_is_auto_paused_and_resumed_from_earliest(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn
) -> None:
    append(api, 5, streams=2)
    receiver = receivers().start()
    sub_id = subscribe_at(api, receiver, 1000)
    dispatchers().wait_ready()
    body = wait_for(lambda: auto_paused(api, sub_id), timeout=15, what="an auto-pause")
    assert body["statusDetails"]["reason"] == "position-ahead"
    assert body["statusDetails"]["position"] == 1000
    assert body["statusDetails"]["headPosition"] == 5
    assert "1000" in body["statusReason"] and "5" in body["statusReason"]
    assert body["statusDetails"]["message"] == body["statusReason"]  # one object, as DeltaBase's
    assert body["lastProcessedEventGlobalPosition"] == 1000, "nothing skipped, nothing moved"
    append(api, 3, streams=2, start=5)  # positions 6..8: an unpaused cursor at 1000 skips them
    refused = api.post(f"/event-stores/{STORE}/subscriptions/{sub_id}/resume", json={"position": 9})
    assert refused.status_code == 400, refused.text
    assert "head" in refused.text
    assert subscription(api, sub_id)["status"] == "auto-paused", "a refused resume writes nothing"
    assert receiver.requests == 0
    resumed = resume(api, sub_id, {"position": "earliest"})
    assert resumed["status"] == "active" and resumed["statusDetails"] is None
    assert resumed["lastProcessedEventGlobalPosition"] == 0
    wait_for(
        lambda: receiver.positions(sub_id) == set(range(1, 9)),
        timeout=15,
        what="every event from earliest",
    )
    receiver.assert_in_order(sub_id)
    wait_for(
        lambda: subscription(api, sub_id)["lastProcessedEventGlobalPosition"] == 8,
        timeout=5,
        what="progress saved",
    )
    assert subscription(api, sub_id)["status"] == "active"


@pytest.mark.timeout(45)
def test_a_recreated_store_auto_pauses_its_subscriptions_until_resumed(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn
) -> None:
    receiver = receivers().start()
    sub_id = subscribe_at(api, receiver, "earliest")
    dispatchers().wait_ready()
    old = append(api, 3, streams=1)
    wait_for(lambda: len(receiver.of(sub_id)) == 3, timeout=15, what="the old store's events")
    wait_for(
        lambda: subscription(api, sub_id)["lastProcessedEventGlobalPosition"] == 3,
        timeout=5,
        what="progress saved",
    )
    assert api.delete(f"/event-stores/{STORE}?confirm=true").status_code == 200
    assert api.post("/event-stores", json={"name": STORE}).status_code == 201
    epoch = api.get(f"/event-stores/{STORE}").json().get("epoch")
    new = append(api, 6, streams=2, start=100)  # positions 1..6: 4..6 lie after the old cursor
    body = wait_for(lambda: auto_paused(api, sub_id), timeout=15, what="an auto-pause")
    details = body["statusDetails"]
    assert details["reason"] == "store-recreated"
    assert details["position"] == 3
    assert details["subscriptionEpoch"] != details["epoch"]
    if epoch is not None:
        assert details["epoch"] == epoch
    old_ids = {e["eventId"] for e in old}
    assert {d.webhook_id for d in receiver.of(sub_id)} == old_ids, "nothing of the new store"
    resumed = resume(api, sub_id)  # no position: a rewind resumes from earliest
    assert resumed["lastProcessedEventGlobalPosition"] == 0
    new_ids = {e["eventId"] for e in new}
    wait_for(
        lambda: {d.webhook_id for d in receiver.of(sub_id)} == old_ids | new_ids,
        timeout=15,
        what="every event of the new store",
    )
    assert receiver.duplicates(sub_id) == 0
    for stream in ("order-0", "order-1"):
        seen = [
            d.event["globalPosition"]
            for d in receiver.of(sub_id)
            if d.webhook_id in new_ids and d.event["streamId"] == stream
        ]
        assert seen == sorted(seen), stream


def test_resume_refuses_a_bad_position(api: TestClient, store: str) -> None:
    receiver = Receiver()
    sub_id = subscribe_at(api, receiver, "latest")
    url = f"/event-stores/{STORE}/subscriptions/{sub_id}/resume"
    for bad in ({"position": -1}, {"position": "soon"}, {"position": {"time": "x"}}, {"at": 1}):
        response = api.post(url, json=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"] in ("VALIDATION_ERROR", "INVALID_SUBSCRIPTION_CONFIG")
    assert resume(api, sub_id, {"position": "latest"})["status"] == "active"


@pytest.mark.timeout(45)
def test_a_subscription_from_a_time_starts_at_the_first_event_at_or_after_it(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn
) -> None:
    events: list[dict[str, Any]] = []
    for i in range(6):
        events = append(api, 1, streams=1, start=i)
        time.sleep(0.003)  # distinct createdAt milliseconds
    boundary = events[3]["createdAt"]
    assert events[2]["createdAt"] < boundary
    receiver = receivers().start()
    sub_id = subscribe_at(api, receiver, {"time": boundary})
    assert subscription(api, sub_id)["lastProcessedEventGlobalPosition"] == 3
    later = subscribe_at(api, receivers().start(), {"time": "2999-01-01T00:00:00Z"})
    assert subscription(api, later)["lastProcessedEventGlobalPosition"] == 6, "after the head"
    dispatchers().wait_ready()
    wait_for(lambda: receiver.positions(sub_id) == {4, 5, 6}, timeout=15, what="events 4..6")
    assert len(receiver.of(sub_id)) == 3
    resumed = resume(api, sub_id, {"position": {"time": events[1]["createdAt"]}})
    assert resumed["lastProcessedEventGlobalPosition"] == 1
