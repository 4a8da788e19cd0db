"""Store administration as DeltaBase documents it (contract section 7): the store list's paging
and name filter, the store's DeltaBase fields and statistics, PATCH .../settings."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from rest_support import PREFIXES, TestClient, append, assert_error, error_fields

from broker import KeyStore, RedisConfig, connect
from gateway.app import create_app
from gateway.settings import Settings


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


# -- PATCH .../settings -------------------------------------------------------------------------


def patch(client: TestClient, path: str, body: Any = None, **kw: Any) -> Any:
    return client.patch(f"{path}/settings", json=body, **kw)


def test_update_description_and_settings_as_deltabase_documents(
    client: TestClient, base: str
) -> None:
    created = {"name": "my-application", "settings": {"retentionPeriodDays": 365}}
    made = client.post(base, json=created).json()
    # DeltaBase's two examples, one after the other.
    described = {"description": "Updated description for my event store"}
    response = patch(client, f"{base}/my-application", described)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["description"] == "Updated description for my event store"
    assert body["settings"] == {"retentionPeriodDays": 365}
    assert body["eventStoreId"] == made["eventStoreId"]
    assert body["eventStoreName"] == "my-application"
    assert body["created"] == made["created"]

    settings = {"retentionPeriodDays": 180, "maxStreamSizeBytes": 2147483648}
    response = patch(client, f"{base}/my-application", {"settings": settings})
    assert response.status_code == 200, response.text
    assert response.json()["settings"] == settings
    assert response.json()["description"] == "Updated description for my event store"
    assert client.get(f"{base}/my-application").json() == response.json()


def test_update_is_a_merge_patch(client: TestClient, store: str) -> None:
    url = f"/event-stores/{store}"
    start = {"a": 1, "keep": "me", "hotRetention": {"maxEvents": 10, "maxAgeSeconds": 60}}
    assert patch(client, url, {"settings": start, "description": "d"}).status_code == 200
    body = patch(client, url, {"settings": {"a": None, "hotRetention": {"maxEvents": 20}}}).json()
    hot = {"maxEvents": 20, "maxAgeSeconds": 60}
    assert body["settings"] == {"keep": "me", "hotRetention": hot}
    assert body["description"] == "d"
    body = patch(client, url, {"description": None}).json()
    assert body["description"] is None and body["settings"]["keep"] == "me"
    body = patch(client, url, {"settings": None}).json()
    assert body["settings"] == {}


@pytest.mark.parametrize("body", [None, {}, {"name": "renamed"}, {"settingz": {"a": 1}}])
def test_an_update_that_changes_nothing_is_no_updates(
    client: TestClient, store: str, body: Any
) -> None:
    for base in PREFIXES:
        if body is None:
            response = client.patch(f"{base}/{store}/settings")
        else:
            response = patch(client, f"{base}/{store}", body)
        result = assert_error(response, 400, "NO_UPDATES")
        assert result["details"] == {"eventStoreName": store}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"settings": {"retentionPeriodDays": -1}}, "settings.retentionPeriodDays"),
        ({"settings": {"maxStreamSizeBytes": "big"}}, "settings.maxStreamSizeBytes"),
        ({"settings": {"hotRetention": {"maxEvents": 0}}}, "settings.hotRetention.maxEvents"),
        ({"settings": [1]}, "settings"),
        ({"settings": "x"}, "settings"),
        ({"description": 5}, "description"),
        ({"description": "x" * 1025}, "description"),
    ],
)
def test_bad_updates_change_nothing(
    client: TestClient, store: str, body: dict[str, Any], field: str
) -> None:
    before = client.get(f"/event-stores/{store}").json()
    result = assert_error(patch(client, f"/event-stores/{store}", body), 400, "VALIDATION_ERROR")
    assert field in error_fields(result)
    assert client.get(f"/event-stores/{store}").json() == before


def test_update_errors(client: TestClient, store: str) -> None:
    response = patch(client, "/event-stores/missing-store", {"description": "x"})
    assert assert_error(response, 404, "EVENT_STORE_NOT_FOUND")["details"] == {
        "eventStoreName": "missing-store"
    }
    response = client.patch(
        f"/event-stores/{store}/settings",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400, "VALIDATION_ERROR")
    response = patch(client, f"/event-stores/{store}", {"description": "x"}, params={"x": "1"})
    assert error_fields(assert_error(response, 400, "VALIDATION_ERROR")) == ["x"]


def test_update_needs_manage_event_stores(redis_url: str) -> None:
    async def key(permissions: list[str], stores: list[str] | None = None) -> str:
        redis = connect(RedisConfig(url=redis_url))
        try:
            return (await KeyStore(redis).create("t", permissions, stores))[1]
        finally:
            await redis.aclose()

    settings = Settings(redis_url=redis_url, auth="enabled", admin_key="admin-key")
    with TestClient(create_app(settings)) as client:
        admin = {"X-API-Key": "admin-key"}
        for name in ("shop", "other"):
            made = client.post("/event-stores", json={"name": name}, headers=admin)
            assert made.status_code == 201
        reader = asyncio.run(key(["read:events", "write:events"]))
        manager = asyncio.run(key(["manage:event_stores"], ["shop"]))
        body = {"description": "new"}
        assert_error(patch(client, "/event-stores/shop", body), 401, "UNAUTHORIZED")
        assert_error(
            patch(client, "/event-stores/shop", body, headers={"X-API-Key": reader}),
            403,
            "FORBIDDEN",
        )
        assert_error(
            patch(client, "/event-stores/other", body, headers={"X-API-Key": manager}),
            403,
            "FORBIDDEN",
        )
        response = patch(client, "/event-stores/shop", body, headers={"X-API-Key": manager})
        assert response.status_code == 200 and response.json()["description"] == "new"
