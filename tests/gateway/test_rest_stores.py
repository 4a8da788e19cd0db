"""Event store administration over REST: create, list, describe, delete."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from rest_support import PREFIXES, TestClient, append, assert_error, error_fields, head

DEEP: dict = {"leaf": 1}
for _ in range(300):  # deeper than JSON encoding allows
    DEEP = {"n": DEEP}


def test_create_store(client: TestClient, base: str) -> None:
    response = client.post(
        base, json={"name": "billing", "description": "money", "settings": {"a": 1}}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "billing"
    assert body["description"] == "money"
    assert body["settings"] == {"a": 1}
    assert body["createdAt"].endswith("Z")
    assert body["statistics"] == {
        "totalStreams": 0,
        "totalEvents": 0,
        "headPosition": 0,
        "hotEvents": 0,
        "archivedEvents": 0,
        "oldestPosition": None,
        # DeltaBase's (contract section 7)
        "databaseSizeBytes": 0,
        "oldestEventTimestamp": None,
        "newestEventTimestamp": None,
    }
    assert body["epoch"]

    plain = client.post(base, json={"name": "p_l-a-1n"})
    assert plain.status_code == 201, plain.text
    assert plain.json()["description"] is None

    again = client.post(base, json={"name": "billing"})
    body = assert_error(again, 409, "EVENT_STORE_ALREADY_EXISTS")
    assert body["details"] == {"eventStoreName": "billing"}
    assert client.get(f"{base}/billing").json()["description"] == "money"


def test_list_stores(client: TestClient, base: str) -> None:
    assert client.get(base).json() == {"eventStores": [], "totalCount": 0}
    for name in ("zeta", "alpha"):
        assert client.post("/event-stores", json={"name": name}).status_code == 201
    body = client.get(base).json()
    assert body["totalCount"] == 2
    assert [s["name"] for s in body["eventStores"]] == ["alpha", "zeta"]
    for s in body["eventStores"]:
        assert set(s) >= {"name", "description", "settings", "createdAt", "statistics"}


def test_get_store_statistics(client: TestClient, store: str, base: str) -> None:
    append(client, store, "order-1", {"type": "a", "data": {}}, {"type": "b", "data": {}})
    append(client, store, "order-2", {"type": "a", "data": None})
    append(client, store, "order-1", {"type": "c", "data": {}})
    response = client.get(f"{base}/{store}")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == store
    statistics = body["statistics"]
    deltabase = ("databaseSizeBytes", "oldestEventTimestamp", "newestEventTimestamp")
    assert {k: v for k, v in statistics.items() if k not in deltabase} == {
        "totalStreams": 2,
        "totalEvents": 4,
        "headPosition": 4,
        "hotEvents": 4,
        "archivedEvents": 0,
        "oldestPosition": 1,
    }
    assert set(statistics) == {*deltabase, "totalStreams", "totalEvents", "headPosition"} | {
        "hotEvents",
        "archivedEvents",
        "oldestPosition",
    }


def test_delete_store(client: TestClient, store: str, base: str) -> None:
    append(client, store, "order-1")
    # Only ``true`` confirms (not what a lenient boolean would take for it).
    for value in ("", "false", "0", "maybe", "yes", "1", "on", "y", "t", "TRUE"):
        query = f"?confirm={value}" if value else ""
        assert_error(client.delete(f"{base}/{store}{query}"), 400, "CONFIRMATION_REQUIRED")
    assert head(client, store) == 1  # still there

    response = client.delete(f"{base}/{store}?confirm=true")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and isinstance(body["message"], str)

    assert_error(client.get(f"{base}/{store}"), 404, "EVENT_STORE_NOT_FOUND")
    assert client.get(base).json()["totalCount"] == 0
    assert_error(client.delete(f"{base}/{store}?confirm=true"), 404, "EVENT_STORE_NOT_FOUND")
    assert_error(append(client, store, "order-1"), 404, "EVENT_STORE_NOT_FOUND")
    assert_error(client.get(f"{base}/{store}/streams/order-1"), 404, "EVENT_STORE_NOT_FOUND")


def test_recreated_store_is_empty(client: TestClient, store: str) -> None:
    first = append(client, store, "order-1")
    assert first.status_code == 201
    key = {"Idempotency-Key": "same-key"}
    replayed = client.post(
        f"/event-stores/{store}/streams/order-1",
        json={"events": [{"type": "t", "data": {}}]},
        headers=key,
    )
    assert replayed.status_code == 201
    assert client.delete(f"/event-stores/{store}?confirm=true").status_code == 200
    assert client.post("/event-stores", json={"name": store}).status_code == 201

    assert head(client, store) == 0
    assert client.get(f"/event-stores/{store}/streams/order-1").json() == {
        "events": [],
        "currentStreamVersion": 0,
    }
    assert client.get(f"/event-stores/{store}/streams").json()["streams"] == []
    assert client.get(f"/event-stores/{store}/events").json()["events"] == []
    fresh = client.post(
        f"/event-stores/{store}/streams/order-1",
        json={"events": [{"type": "t", "data": {}}]},
        headers=key,
    )
    assert fresh.status_code == 201
    assert fresh.json()["globalPosition"] == 1
    assert fresh.json()["transactionId"] != replayed.json()["transactionId"]
    assert head(client, store) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Orders"}, "name"),
        ({"name": "a{b}c"}, "name"),
        ({"name": "ord*rs"}, "name"),
        ({"name": "or:ders"}, "name"),
        ({"name": "with space"}, "name"),
        ({"name": "ab"}, "name"),
        ({"name": "x" * 64}, "name"),
        ({"name": "ordérs"}, "name"),
        ({"name": 123}, "name"),
        ({"name": None}, "name"),
        ({}, "name"),
        ({"name": "good", "description": 5}, "description"),
        ({"name": "good", "settings": [1]}, "settings"),
        ({"name": "good", "description": "x" * 1025}, "description"),
        ({"name": "good", "settings": {"a": 1, "deep": DEEP}}, "settings"),
    ],
)
def test_create_store_validation(client: TestClient, body: dict, field: str) -> None:
    for base in PREFIXES:
        result = assert_error(client.post(base, json=body), 400, "VALIDATION_ERROR")
        assert field in error_fields(result)
    assert client.get("/event-stores").json()["totalCount"] == 0


BAD_NAMES = ["Orders", "a{b}c", "{orders}", "ord*rs", "*", "no", "x" * 64, "ord:ers", "ordérs"]


@pytest.mark.parametrize("name", [*BAD_NAMES, "missing-store"])
def test_unknown_or_impossible_store_is_not_found(
    client: TestClient, store: str, name: str
) -> None:
    events = {"events": [{"type": "t", "data": {}}]}
    for base in PREFIXES:
        path = f"{base}/{quote(name, safe='')}"
        for response in (
            client.get(path),
            client.delete(path + "?confirm=true"),
            client.post(path + "/streams/s-1", json=events),
            client.post(path + "/streams/s-1/events", json=events),
            client.get(path + "/streams/s-1"),
            client.get(path + "/events"),
            client.get(path + "/streams"),
        ):
            body = assert_error(response, 404, "EVENT_STORE_NOT_FOUND")
            assert body["details"] == {"eventStoreName": name}
    assert head(client, store) == 0
    assert client.get("/event-stores").json()["totalCount"] == 1
