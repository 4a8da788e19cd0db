"""Stream reads under DeltaBase's names (toStreamPosition, maxCount, expectedStreamVersion), and
GET .../streams/{id}/events: the same read, plus the store query's filters and paging."""

from __future__ import annotations

from typing import Any

import pytest
from rest_support import PREFIXES, TestClient, append, assert_error, error_fields
from test_rest_reads import READ_CASES, fill


def read(client: TestClient, path: str, status: int = 200, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


def stream_positions(body: dict[str, Any]) -> list[int]:
    return [e["streamPosition"] for e in body["events"]]


DELTABASE_NAMES: list[tuple[dict[str, Any], list[int]]] = [
    ({"toStreamPosition": 2}, [0, 1, 2]),
    ({"fromStreamPosition": 1, "toStreamPosition": 3}, [1, 2, 3]),
    ({"maxCount": 2}, [0, 1]),
    ({"fromStreamPosition": 2, "maxCount": 2}, [2, 3]),
    ({"direction": "backward", "toStreamPosition": 3}, [4, 3]),
    ({"direction": "backward", "fromStreamPosition": 3, "toStreamPosition": 1}, [3, 2, 1]),
    ({"direction": "backward", "maxCount": 1}, [4]),
    # The two names of one option may both be given when they agree.
    ({"from": 1, "fromStreamPosition": 1, "to": 2, "toStreamPosition": 2}, [1, 2]),
    ({"limit": 3, "maxCount": 3}, [0, 1, 2]),
    ({"maxCount": 5000}, [0, 1, 2, 3, 4]),
]


def test_deltabase_names_on_a_stream_read(client: TestClient, store: str, base: str) -> None:
    fill(client, store)
    for params, want in DELTABASE_NAMES:
        body = read(client, f"{base}/{store}/streams/order-1", **params)
        assert set(body) == {"events", "currentStreamVersion"}
        assert stream_positions(body) == want, params
        assert body["currentStreamVersion"] == 5


def test_expected_stream_version_on_a_read(client: TestClient, store: str, base: str) -> None:
    fill(client, store)
    for path in ("streams/order-1", "streams/order-1/events"):
        url = f"{base}/{store}/{path}"
        for expected in ("5", "any", "stream_exists"):
            body = read(client, url, expectedStreamVersion=expected)
            assert len(body["events"]) == 5 and body["currentStreamVersion"] == 5
        for expected, shown in (("4", 4), ("6", 6), ("0", 0), ("no_stream", "no_stream")):
            response = client.get(url, params={"expectedStreamVersion": expected})
            result = assert_error(response, 409, "STREAM_VERSION_CONFLICT")
            assert result["details"] == {
                "streamId": "order-1",
                "expectedVersion": shown,
                "currentVersion": 5,
            }
        missing = f"{base}/{store}/{path.replace('order-1', 'nothing-here')}"
        assert read(client, missing, expectedStreamVersion="no_stream")["events"] == []
        assert read(client, missing, expectedStreamVersion="0")["currentStreamVersion"] == 0
        result = assert_error(
            client.get(missing, params={"expectedStreamVersion": "stream_exists"}),
            409,
            "STREAM_VERSION_CONFLICT",
        )
        assert result["details"]["currentVersion"] == 0


def test_stream_events_read_like_the_stream(client: TestClient, store: str, base: str) -> None:
    fill(client, store)
    for params, want in READ_CASES + DELTABASE_NAMES:
        plain = read(client, f"{base}/{store}/streams/order-1", **params)
        body = read(client, f"{base}/{store}/streams/order-1/events", **params)
        assert set(body) == {"events", "currentStreamVersion", "pagination"}
        assert body["events"] == plain["events"], params
        assert stream_positions(body) == want, params
        assert body["currentStreamVersion"] == 5
        limit = min(params.get("limit", params.get("maxCount", 1000)), 1000)
        assert body["pagination"] == {"limit": limit, "offset": 0, "hasMore": False} or (
            body["pagination"]["hasMore"] and len(want) == limit
        ), (params, body["pagination"])
    missing = read(client, f"{base}/{store}/streams/nothing-here/events")
    assert missing == {
        "events": [],
        "currentStreamVersion": 0,
        "pagination": {"limit": 1000, "offset": 0, "hasMore": False},
    }


def test_stream_events_filters(client: TestClient, store: str) -> None:
    log = fill(client, store)  # order-1 holds globalPositions 1, 4, 5, 8, 11
    url = f"/event-stores/{store}/streams/order-1/events"
    types = {g: t for g, sid, t in log if sid == "order-1"}

    def globals_of(**params: Any) -> list[int]:
        return [e["globalPosition"] for e in read(client, url, **params)["events"]]

    assert globals_of(type="order.*") == [g for g, t in types.items() if t.startswith("order.")]
    assert globals_of(type=["payment.*", "order.archived"]) == [5, 11]
    assert globals_of(type="user.*") == []
    assert globals_of(fromPosition=4, toPosition=8) == [4, 5, 8]
    assert globals_of(sortDirection="desc") == [11, 8, 5, 4, 1]
    assert globals_of(sortDirection="desc", direction="backward") == [11, 8, 5, 4, 1]
    assert globals_of(sortBy="streamPosition", sortDirection="asc") == [1, 4, 5, 8, 11]
    assert globals_of(type="order.*", direction="backward", maxCount=2) == [11, 8]
    assert globals_of(type="order.*", fromStreamPosition=1) == [4, 8, 11]

    everything = read(client, url)["events"]
    third = everything[2]
    assert globals_of(eventId=third["eventId"]) == [5]
    assert globals_of(transactionId=third["transactionId"]) == [5]
    assert globals_of(fromDate=third["createdAt"], toDate=third["createdAt"]) == [5]
    assert globals_of(fromDate=everything[3]["createdAt"]) == [8, 11]

    page = read(client, url, type="order.*", limit=2, offset=1, includeCount="true")
    assert [e["globalPosition"] for e in page["events"]] == [4, 8]
    assert page["pagination"] == {"limit": 2, "offset": 1, "total": 4, "hasMore": True}
    assert page["currentStreamVersion"] == 5


def test_a_long_stream_pages_through_its_events(client: TestClient, store: str) -> None:
    for _ in range(3):
        append(client, store, "big", *({"type": f"t.{i % 2}", "data": {}} for i in range(1000)))
    url = f"/event-stores/{store}/streams/big/events"
    body = read(client, url, type="t.1", offset=600, limit=1000, includeCount="true")
    assert [e["streamPosition"] for e in body["events"]] == list(range(1201, 3000, 2))
    assert body["pagination"] == {"limit": 1000, "offset": 600, "total": 1500, "hasMore": False}
    body = read(client, url, type="t.0", direction="backward", limit=3, includeCount="true")
    assert [e["streamPosition"] for e in body["events"]] == [2998, 2996, 2994]
    assert body["pagination"]["hasMore"] and body["pagination"]["total"] == 1500


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("", {"from": 1, "fromStreamPosition": 2}, "fromStreamPosition"),
        ("", {"to": 1, "toStreamPosition": 2}, "toStreamPosition"),
        ("", {"limit": 1, "maxCount": 2}, "maxCount"),
        ("", {"maxCount": 0}, "maxCount"),
        ("", {"toStreamPosition": -1}, "toStreamPosition"),
        ("", {"expectedStreamVersion": "-1"}, "expectedStreamVersion"),
        ("", {"expectedStreamVersion": "1.0"}, "expectedStreamVersion"),
        ("", {"expectedStreamVersion": "exists"}, "expectedStreamVersion"),
        ("", {"type": "order.*"}, "type"),  # only .../events filters by type
        ("", {"sortDirection": "desc"}, "sortDirection"),
        ("/events", {"direction": "forward", "sortDirection": "desc"}, "sortDirection"),
        ("/events", {"type": ""}, "type"),
        ("/events", {"fromDate": "soon"}, "fromDate"),
        ("/events", {"sortBy": "type"}, "sortBy"),
        ("/events", {"streamId": "order-2"}, "streamId"),  # the path names the stream
        ("/events", {"bogus": "1"}, "bogus"),
    ],
)
def test_bad_stream_read_options(
    client: TestClient, store: str, path: str, params: dict[str, Any], field: str
) -> None:
    for base in PREFIXES:
        response = client.get(f"{base}/{store}/streams/order-1{path}", params=params)
        assert error_fields(assert_error(response, 400, "VALIDATION_ERROR")) == [field]
