"""Store administration as DeltaBase documents it (contract section 7): the store list's paging
and name filter, the store's DeltaBase fields and statistics, PATCH .../settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_support import PREFIXES, TestClient, append, assert_error, error_fields


def names(body: dict[str, Any]) -> list[str]:
    return [s["name"] for s in body["eventStores"]]


def test_store_list_pages_and_filters(client: TestClient, base: str) -> None:
    made = [f"app-{i:02d}" for i in range(60)] + ["my-app", "my-app-staging", "other"]
    for name in made:
        assert client.post("/event-stores", json={"name": name}).status_code == 201
    made.sort()

    first = client.get(base).json()
    assert names(first) == made[:50] and first["totalCount"] == 63  # DeltaBase's default: 50
    rest = client.get(base, params={"offset": 50}).json()
    assert names(rest) == made[50:] and rest["totalCount"] == 63
    page = client.get(base, params={"limit": 5, "offset": 10}).json()
    assert names(page) == made[10:15] and page["totalCount"] == 63
    assert names(client.get(base, params={"limit": 5000}).json()) == made

    # DeltaBase's example: GET /event-stores?limit=50&offset=0&filter=my-app
    found = client.get(f"{base}?limit=50&offset=0&filter=my-app").json()
    assert found == {"eventStores": found["eventStores"], "totalCount": 2}
    assert names(found) == ["my-app", "my-app-staging"]
    assert names(client.get(base, params={"filter": "APP-0", "limit": 3}).json()) == [
        "app-00",
        "app-01",
        "app-02",
    ]
    assert client.get(base, params={"filter": "APP-0"}).json()["totalCount"] == 10
    assert client.get(base, params={"filter": "nothing"}).json() == {
        "eventStores": [],
        "totalCount": 0,
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"filter": "x" * 257}, "filter"),
        ({"name": "orders"}, "name"),
        ({"search": "orders"}, "search"),
    ],
)
def test_bad_store_list_options(client: TestClient, params: dict[str, Any], field: str) -> None:
    for base in PREFIXES:
        response = client.get(base, params=params)
        assert error_fields(assert_error(response, 400, "VALIDATION_ERROR")) == [field]


def test_store_info_carries_deltabase_fields(client: TestClient, base: str) -> None:
    made = client.post(base, json={"name": "shop", "description": "d"}).json()
    assert made["eventStoreId"] == made["epoch"] and made["eventStoreId"]
    assert made["eventStoreName"] == made["name"] == "shop"
    assert made["created"] == made["createdAt"] and made["created"].endswith("Z")
    empty = made["statistics"]
    assert (
        empty["databaseSizeBytes"],
        empty["oldestEventTimestamp"],
        empty["newestEventTimestamp"],
    ) == (0, None, None)

    for stream_id in ("order-1", "order-2", "order-1"):
        response = append(client, "shop", stream_id, {"type": "order.placed", "data": {"n": 1}})
        assert response.status_code == 201
    events = client.get(f"{base}/shop/events").json()["events"]
    for view in (client.get(f"{base}/shop").json(), client.get(base).json()["eventStores"][0]):
        assert view["eventStoreId"] == made["eventStoreId"]
        assert view["eventStoreName"] == "shop" and view["created"] == made["created"]
        stats = view["statistics"]
        assert stats["oldestEventTimestamp"] == events[0]["createdAt"]
        assert stats["newestEventTimestamp"] == events[-1]["createdAt"]
        assert stats["databaseSizeBytes"] == sum(stored_bytes(e) for e in events)


def stored_bytes(event: dict[str, Any]) -> int:
    """The bytes the log keeps for an event: its JSON after ``{`` and the positions."""
    body = {k: v for k, v in event.items() if k not in ("globalPosition", "streamPosition")}
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()) - 1
