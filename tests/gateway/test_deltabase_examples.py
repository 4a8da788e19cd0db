"""DeltaBase's own request examples for the store administration and the reads, sent as its
documentation gives them (API reference, operation pages, SDK reference), against a real Redis.
docs/api.md's compatibility table marks these calls supported; a failure here means a DeltaBase
app would break."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from rest_support import TestClient, assert_error, error_fields
from test_rest_reads import EVENT_FIELDS  # DeltaBase's ReadEvent


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture
def my_app(client: TestClient) -> str:
    """The quick start: POST /api/event-stores {"name": "my-app"}, then the documented appends
    (POST .../streams/user-123/events), a second user and an order."""
    ok(client.post("/api/event-stores", json={"name": "my-app"}), 201)
    for stream_id, events in (
        ("user-123", [{"type": "UserRegistered", "data": {"email": "user@example.com"}}]),
        ("user-456", [{"type": "user.created", "data": {"id": "user-456"}}]),
        (
            "user-123",
            [
                {"type": "user.updated", "data": {"email": "updated@example.com"}},
                {"type": "user.verified", "data": {}, "metadata": {"correlationId": "abc-123"}},
            ],
        ),
        ("order_789", [{"type": "order.placed", "data": {"total": 42}}]),
        ("product:789", [{"type": "product.listed", "data": {}}]),
    ):
        ok(
            client.post(
                f"/api/event-stores/my-app/streams/{stream_id}/events", json={"events": events}
            ),
            201,
        )
    return "my-app"


# -- Management API ------------------------------------------------------------------------------


def test_create_get_and_list_event_stores(client: TestClient) -> None:
    created = ok(
        client.post(
            "/event-stores",
            json={
                "name": "my-event-store",
                "description": "Event store for my application",
                "region": "us-west-1",
                "settings": {"retentionPeriodDays": 365, "maxStreamSizeBytes": 104857600},
            },
        ),
        201,
    )
    assert created["name"] == created["eventStoreName"] == "my-event-store"
    assert created["description"] == "Event store for my application"
    ok(client.post("/event-stores", json={"name": "my-app"}), 201)
    ok(client.post("/event-stores", json={"name": "other"}), 201)

    store = ok(client.get("/event-stores/my-event-store"))
    assert store["settings"] == {"retentionPeriodDays": 365, "maxStreamSizeBytes": 104857600}
    assert set(store["statistics"]) >= {
        "totalStreams",
        "totalEvents",
        "databaseSizeBytes",
        "oldestEventTimestamp",
        "newestEventTimestamp",
    }
    assert {"eventStoreId", "eventStoreName", "created", "description"} <= set(store)

    listed = ok(client.get("/event-stores?limit=50&offset=0&filter=my-app"))
    assert [s["name"] for s in listed["eventStores"]] == ["my-app"]
    assert listed["totalCount"] == 1


def test_update_event_store_settings(client: TestClient) -> None:
    ok(client.post("/api/event-stores", json={"name": "my-application"}), 201)
    url = "/api/event-stores/my-application/settings"
    body = ok(client.patch(url, json={"description": "Updated description for my event store"}))
    assert body["description"] == "Updated description for my event store"
    assert body["eventStoreName"] == "my-application" and body["created"]
    settings = {"retentionPeriodDays": 180, "maxStreamSizeBytes": 2147483648}
    assert ok(client.patch(url, json={"settings": settings}))["settings"] == settings
    result = assert_error(client.patch(url, json={}), 400, "NO_UPDATES")
    assert result["details"] == {"eventStoreName": "my-application"}


def test_delete_event_store(client: TestClient) -> None:
    ok(client.post("/api/event-stores", json={"name": "my-app"}), 201)
    assert_error(client.delete("/api/event-stores/my-app"), 400, "CONFIRMATION_REQUIRED")
    body = ok(client.delete("/api/event-stores/my-app?confirm=true"))
    assert body["success"] is True and body["message"]
    missing = client.delete("/api/event-stores/my-app?confirm=true")
    assert_error(missing, 404, "EVENT_STORE_NOT_FOUND")


# -- reading a stream ------------------------------------------------------------------------------


def test_read_events_from_a_stream(client: TestClient, my_app: str) -> None:
    # curl https://api.delta-base.com/api/event-stores/my-app/streams/user-123/events
    body = ok(client.get("/api/event-stores/my-app/streams/user-123/events"))
    assert [e["type"] for e in body["events"]] == [
        "UserRegistered",
        "user.updated",
        "user.verified",
    ]
    assert all(set(e) >= EVENT_FIELDS for e in body["events"])
    assert body["events"][2]["metadata"] == {"correlationId": "abc-123"}
    assert body["currentStreamVersion"] == 3

    # readStream('user-123', {direction: 'forward', limit: 100}) and the other ReadStreamOptions
    url = "/api/event-stores/my-app/streams/user-123"
    body = ok(client.get(f"{url}?direction=forward&limit=100"))
    assert [e["streamPosition"] for e in body["events"]] == [0, 1, 2]
    assert body["currentStreamVersion"] == 3
    body = ok(client.get(f"{url}?direction=backward&fromStreamPosition=1&toStreamPosition=0"))
    assert [e["streamPosition"] for e in body["events"]] == [1, 0]
    body = ok(client.get(f"{url}?fromStreamPosition=1&toStreamPosition=2&limit=1"))
    assert [e["streamPosition"] for e in body["events"]] == [1]

    # expectedStreamVersion: "optionally verify the stream version matches expectations"
    assert ok(client.get(f"{url}?expectedStreamVersion=3"))["currentStreamVersion"] == 3
    conflict = assert_error(
        client.get(f"{url}?expectedStreamVersion=2"), 409, "STREAM_VERSION_CONFLICT"
    )
    assert conflict["details"] == {
        "streamId": "user-123",
        "expectedVersion": 2,
        "currentVersion": 3,
    }

    # "If the stream does not exist, returns an empty events array with currentStreamVersion 0"
    assert ok(client.get("/api/event-stores/my-app/streams/user-999")) == {
        "events": [],
        "currentStreamVersion": 0,
    }
    # The older reference: from (inclusive) and maxCount on .../events
    body = ok(client.get(f"{url}/events?from=1&maxCount=1"))
    assert [e["streamPosition"] for e in body["events"]] == [1]


def test_query_events_for_a_specific_stream(client: TestClient, my_app: str) -> None:
    url = "/api/event-stores/my-app/streams/user-123/events"
    body = ok(client.get(f"{url}?type=user.updated&type=user.verified&includeCount=true"))
    assert [e["streamPosition"] for e in body["events"]] == [1, 2]
    assert body["pagination"] == {"limit": 1000, "offset": 0, "total": 2, "hasMore": False}
    body = ok(client.get(f"{url}?sortBy=streamPosition&sortDirection=desc&limit=2&offset=0"))
    assert [e["streamPosition"] for e in body["events"]] == [2, 1]
    assert body["pagination"]["hasMore"] is True
    assert ok(client.get("/api/event-stores/my-app/streams/none-1/events"))["events"] == []


# -- querying the store ---------------------------------------------------------------------------


def test_query_events_with_filtering_options(client: TestClient, my_app: str) -> None:
    url = "/api/event-stores/my-app/events"
    everything = ok(client.get(url))
    assert set(everything) == {"events", "pagination"}
    events = everything["events"]
    assert [e["globalPosition"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert everything["pagination"] == {"limit": 100, "offset": 0, "hasMore": False}

    body = ok(client.get(f"{url}?type=user.created&type=user.updated&includeCount=true"))
    assert [e["type"] for e in body["events"]] == ["user.created", "user.updated"]
    assert body["pagination"] == {"limit": 100, "offset": 0, "total": 2, "hasMore": False}
    body = ok(client.get(f"{url}?streamId=user-123&sortBy=globalPosition&sortDirection=desc"))
    assert [e["globalPosition"] for e in body["events"]] == [4, 3, 1]
    body = ok(client.get(f"{url}?fromPosition=2&toPosition=4&limit=2&offset=1"))
    assert [e["globalPosition"] for e in body["events"]] == [3, 4]

    target = events[3]
    assert ok(client.get(f"{url}?eventId={target['eventId']}"))["events"] == [target]
    same_tx = ok(client.get(f"{url}?transactionId={target['transactionId']}"))["events"]
    assert [e["globalPosition"] for e in same_tx] == [3, 4]

    first, last = events[0]["createdAt"], events[-1]["createdAt"]
    body = ok(client.get(url, params={"fromDate": first, "toDate": last, "sortBy": "createdAt"}))
    assert [e["globalPosition"] for e in body["events"]] == [1, 2, 3, 4, 5, 6]
    later = ok(client.get(url, params={"fromDate": last}))["events"]
    assert later and all(e["createdAt"] >= last for e in later)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"fromDate": "not-a-date"}, "fromDate"),
        ({"toDate": "2023-02-30T00:00:00Z"}, "toDate"),
        ({"sortBy": "global_position"}, "sortBy"),
        ({"sortBy": "streamPosition"}, "sortBy"),  # store-wide: needs streamId
        ({"sortDirection": "descending"}, "sortDirection"),
        ({"phase": "1"}, "phase"),
        ({"includeArchived": "perhaps"}, "includeArchived"),
        ({"typo": "user.created"}, "typo"),
    ],
)
def test_query_refuses_what_it_would_not_apply(
    client: TestClient, my_app: str, params: dict[str, str], field: str
) -> None:
    response = client.get("/api/event-stores/my-app/events", params=params)
    assert error_fields(assert_error(response, 400, "VALIDATION_ERROR")) == [field]


# -- streams ---------------------------------------------------------------------------------------


def test_query_streams_with_filtering_options(client: TestClient, my_app: str) -> None:
    url = "/api/event-stores/my-app/streams"
    body = ok(client.get(url))
    types = {s["streamId"]: s["streamType"] for s in body["streams"]}
    # "Supports hyphen (-), underscore (_), or colon (:) as delimiters."
    assert types == {
        "user-123": "user",
        "user-456": "user",
        "order_789": "order",
        "product:789": "product",
    }
    body = ok(
        client.get(
            f"{url}?streamType=user&sortBy=streamPosition&sortDirection=desc&includeCount=true"
        )
    )
    assert [s["streamId"] for s in body["streams"]] == ["user-123", "user-456"]
    assert body["pagination"] == {"limit": 100, "offset": 0, "total": 2, "hasMore": False}
    body = ok(client.get(url, params={"streamType": ["order", "product"]}))
    assert [s["streamId"] for s in body["streams"]] == ["order_789", "product:789"]
    assert [s["streamId"] for s in ok(client.get(f"{url}?streamIdPattern=*789"))["streams"]] == [
        "order_789",
        "product:789",
    ]
    body = ok(client.get(f"{url}?minPosition=1&maxPosition=5&limit=10&offset=0"))
    assert [(s["streamId"], s["streamPosition"]) for s in body["streams"]] == [("user-123", 2)]
    created = [datetime.fromisoformat(s["createdAt"]) for s in ok(client.get(url))["streams"]]
    body = ok(client.get(url, params={"fromDate": created[0].isoformat(), "sortBy": "updatedAt"}))
    assert len(body["streams"]) == 4 and body["streams"][-1]["streamId"] == "product:789"
    assert ok(client.get(f"{url}?streamId=order_789"))["streams"][0]["streamPosition"] == 0

    # Query streams of a specific type
    by_type = ok(client.get("/api/event-stores/my-app/stream-types/user/streams?sortBy=streamId"))
    assert [s["streamId"] for s in by_type["streams"]] == ["user-123", "user-456"]

    # DeltaBase's includeArchived / includeMetadata: accepted, and change nothing here (no
    # stream is ever archived; streams carry no metadata beyond their fields).
    everything = ok(client.get(url))
    for name in ("includeArchived", "includeMetadata"):
        for value in ("true", "false"):
            assert ok(client.get(url, params={name: value})) == everything
        response = client.get(url, params={name: "perhaps"})
        assert error_fields(assert_error(response, 400, "VALIDATION_ERROR")) == [name]


def test_include_archived_reads_every_event(client: TestClient, my_app: str) -> None:
    """No stream is ever archived in deltagate: ``includeArchived`` either way reads the same
    events (the PostgreSQL archive is crossed by every read, whatever the parameter)."""
    for url in (
        "/api/event-stores/my-app/events",
        "/api/event-stores/my-app/streams/user-123/events",
    ):
        everything = ok(client.get(url))
        assert everything["events"]
        for value in ("true", "false", "1", "0"):
            assert ok(client.get(url, params={"includeArchived": value})) == everything
