"""The store query's filters on the events' own fields (contract section 7): eventId,
transactionId, fromDate/toDate, sortBy; each one given is applied, each bad value refused."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from rest_support import TestClient, append, assert_error, error_fields


def query(client: TestClient, store: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/event-stores/{store}/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def positions(body: dict[str, Any]) -> list[int]:
    return [e["globalPosition"] for e in body["events"]]


def three_appends(client: TestClient, store: str) -> list[dict[str, Any]]:
    """Three appends a few milliseconds apart (distinct createdAt); returns every event."""
    for stream_id, types in (
        ("order-1", ["order.created", "order.paid"]),
        ("order-2", ["order.created"]),
        ("order-1", ["order.shipped", "order.delivered", "order.archived"]),
    ):
        response = append(client, store, stream_id, *({"type": t, "data": {}} for t in types))
        assert response.status_code == 201, response.text
        time.sleep(0.01)
    return query(client, store)["events"]  # type: ignore[no-any-return]


def test_event_id(client: TestClient, store: str, base: str) -> None:
    events = three_appends(client, store)
    for event in events:
        page = client.get(
            f"{base}/{store}/events", params={"eventId": event["eventId"], "includeCount": "true"}
        ).json()
        assert page["events"] == [event]
        assert page["pagination"] == {"limit": 100, "offset": 0, "total": 1, "hasMore": False}
    assert query(client, store, eventId="no-such-event")["events"] == []
    one = events[3]
    assert positions(query(client, store, eventId=one["eventId"], streamId="order-1")) == [4]
    assert query(client, store, eventId=one["eventId"], streamId="order-2")["events"] == []
    assert query(client, store, eventId=one["eventId"], type="order.created")["events"] == []
    assert query(client, store, eventId=one["eventId"], fromPosition=5)["events"] == []


def test_transaction_id(client: TestClient, store: str) -> None:
    events = three_appends(client, store)
    transactions = [e["transactionId"] for e in events]
    assert len(set(transactions)) == 3
    last = transactions[-1]
    page = query(client, store, transactionId=last, includeCount="true")
    assert positions(page) == [4, 5, 6] and page["pagination"]["total"] == 3
    assert positions(query(client, store, transactionId=last, sortDirection="desc")) == [6, 5, 4]
    assert positions(query(client, store, transactionId=last, type="order.d*")) == [5]
    assert positions(query(client, store, transactionId=last, limit=1, offset=1)) == [5]
    assert positions(query(client, store, transactionId=transactions[0])) == [1, 2]
    assert query(client, store, transactionId="tx-none")["events"] == []


def test_dates(client: TestClient, store: str) -> None:
    events = three_appends(client, store)
    times = sorted({e["createdAt"] for e in events})
    assert len(times) == 3  # one per append
    first, second, third = times
    assert positions(query(client, store, fromDate=second)) == [3, 4, 5, 6]
    assert positions(query(client, store, toDate=second)) == [1, 2, 3]
    assert positions(query(client, store, fromDate=second, toDate=second)) == [3]
    assert positions(query(client, store, fromDate=third, sortDirection="desc")) == [6, 5, 4]
    assert positions(query(client, store, toDate=first, type="order.paid")) == [2]
    assert query(client, store, fromDate=third, toDate=first)["events"] == []
    # The same instants written with other offsets; a date is its midnight, UTC.
    moment = datetime.fromisoformat(second)
    east = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    west = moment.astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert positions(query(client, store, fromDate=east)) == [3, 4, 5, 6]
    assert positions(query(client, store, toDate=west)) == [1, 2, 3]
    today = moment.date().isoformat()
    assert positions(query(client, store, fromDate=today)) == [1, 2, 3, 4, 5, 6]
    assert query(client, store, toDate="2000-01-01")["events"] == []
    page = query(client, store, fromDate=second, includeCount="true", limit=2)
    assert positions(page) == [3, 4]
    assert page["pagination"] == {"limit": 2, "offset": 0, "total": 4, "hasMore": True}


def test_sort_by(client: TestClient, store: str) -> None:
    three_appends(client, store)
    for sort_by in ("globalPosition", "createdAt"):
        assert positions(query(client, store, sortBy=sort_by)) == [1, 2, 3, 4, 5, 6]
        assert positions(query(client, store, sortBy=sort_by, sortDirection="desc")) == [
            6,
            5,
            4,
            3,
            2,
            1,
        ]
    assert positions(query(client, store, sortBy="streamPosition", streamId="order-1")) == [
        1,
        2,
        4,
        5,
        6,
    ]
    assert positions(
        query(client, store, sortBy="streamPosition", streamId="order-1", sortDirection="desc")
    ) == [6, 5, 4, 2, 1]


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"fromDate": "yesterday"}, "fromDate", "ISO 8601"),
        ({"toDate": "2024-13-01"}, "toDate", "ISO 8601"),
        ({"toDate": "2024-01-15T25:00:00Z"}, "toDate", "ISO 8601"),
        ({"fromDate": ""}, "fromDate", "ISO 8601"),
        ({"toDate": "9999-12-31T23:00:00-14:00"}, "toDate", "years 1 to 9999"),
        ({"fromDate": "0001-01-01T00:00:00+14:00"}, "fromDate", "years 1 to 9999"),
        ({"sortBy": "eventId"}, "sortBy", "globalPosition"),
        ({"sortBy": "createdat"}, "sortBy", "createdAt"),
        ({"sortBy": "streamPosition"}, "sortBy", "streamId"),
        ({"eventId": ""}, "eventId", ""),
        ({"transactionId": "t" * 257}, "transactionId", ""),
        ({"sortDirection": "ascending"}, "sortDirection", ""),
    ],
)
def test_bad_values_are_refused_by_name(
    client: TestClient, store: str, params: dict[str, str], field: str, says: str
) -> None:
    result = assert_error(
        client.get(f"/event-stores/{store}/events", params=params), 400, "VALIDATION_ERROR"
    )
    assert error_fields(result) == [field]
    assert says in result["message"]


def test_every_bad_parameter_is_listed_dates_too(client: TestClient, store: str) -> None:
    params = {"fromDate": "bad", "toDate": "worse", "limit": "0", "offset": "-1"}
    result = assert_error(
        client.get(f"/event-stores/{store}/events", params=params), 400, "VALIDATION_ERROR"
    )
    assert sorted(error_fields(result)) == ["fromDate", "limit", "offset", "toDate"]
    result = assert_error(
        client.get(f"/event-stores/{store}/streams", params=params), 400, "VALIDATION_ERROR"
    )
    assert sorted(error_fields(result)) == ["fromDate", "limit", "offset", "toDate"]


@pytest.mark.parametrize("end", ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999+00:00"])
def test_a_to_date_at_the_end_of_time_bounds_nothing(
    client: TestClient, store: str, base: str, end: str
) -> None:
    append(client, store, "order-1", {"type": "order.placed"})
    for path in ("events", "streams/order-1/events"):
        response = client.get(f"{base}/{store}/{path}", params={"toDate": end})
        assert response.status_code == 200, response.text
        assert [e["globalPosition"] for e in response.json()["events"]] == [1]
