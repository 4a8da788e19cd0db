"""Redis goes away between requests and comes back: the gateway answers 503 UNAVAILABLE with
Retry-After meanwhile, recovers by itself, and nothing acknowledged is lost or doubled."""

from __future__ import annotations

from typing import Any

import pytest
from rest_support import TestClient, append, assert_error, head
from starlette.websockets import WebSocketDisconnect

from tests.harness import sample


def all_events(client: TestClient, store: str) -> list[dict[str, Any]]:
    response = client.get(f"/event-stores/{store}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


def redis_errors(client: TestClient) -> float:
    """``deltagate_redis_errors_total`` of the pod."""
    value = sample(client.get("/metrics").text, "deltagate_redis_errors_total")
    assert value is not None, "no deltagate_redis_errors_total on /metrics"
    return value


def test_redis_restart_between_requests(redis_server: Any, client: TestClient, store: str) -> None:
    acknowledged: list[int] = []
    for n in range(5):
        response = append(client, store, f"s-{n % 2}", {"type": "before", "data": {"n": n}})
        assert response.status_code == 201
        acknowledged.append(response.json()["globalPosition"])
    keyed = client.post(
        f"/event-stores/{store}/streams/s-keyed",
        json={"events": [{"type": "keyed", "data": {}}]},
        headers={"Idempotency-Key": "survives"},
    )
    assert keyed.status_code == 201

    errors = redis_errors(client)
    redis_server.stop()
    try:
        down = [
            client.get("/readyz"),
            client.get(f"/event-stores/{store}"),
            client.get("/event-stores"),
            client.get(f"/event-stores/{store}/streams/s-0"),
            client.get(f"/event-stores/{store}/events"),
            client.get(f"/event-stores/{store}/streams"),
            append(client, store, "s-0", {"type": "during", "data": {}}),
            client.post("/event-stores", json={"name": "another"}),
        ]
        for response in down:
            assert_error(response, 503, "UNAVAILABLE")
            assert int(response.headers["Retry-After"]) > 0
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        # Every failed request failed a Redis call at least once: each is counted.
        assert redis_errors(client) >= errors + len(down)
        # So is a WebSocket that could not start for want of Redis (not a REST answer).
        errors = redis_errors(client)
        with client.websocket_connect(f"/event-stores/{store}/events/ws") as ws:
            ws.send_json({"action": "subscribe", "eventFilter": "*", "subscriptionId": "a"})
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 1013  # (try again later)
        assert redis_errors(client) > errors
    finally:
        redis_server.start()

    assert client.get("/readyz").status_code == 200
    after = append(client, store, "s-0", {"type": "after", "data": {}})
    assert after.status_code == 201, after.text
    assert after.json()["globalPosition"] == 7

    # The key recorded before the restart still replays.
    again = client.post(
        f"/event-stores/{store}/streams/s-keyed",
        json={"events": [{"type": "keyed", "data": {}}]},
        headers={"Idempotency-Key": "survives"},
    )
    assert again.status_code == 201 and again.json() == keyed.json()

    events = all_events(client, store)
    assert [e["globalPosition"] for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert [e["type"] for e in events] == ["before"] * 5 + ["keyed", "after"]
    assert [e["data"].get("n") for e in events[:5]] == [0, 1, 2, 3, 4]
    assert [e["globalPosition"] for e in events[:5]] == acknowledged
    assert head(client, store) == 7
    s0 = client.get(f"/event-stores/{store}/streams/s-0").json()
    assert [e["streamPosition"] for e in s0["events"]] == [0, 1, 2, 3]
    assert [e["type"] for e in s0["events"]] == ["before"] * 3 + ["after"]
    assert client.get("/event-stores").json()["totalCount"] == 1
