"""The streams list's filters and orders (contract section 7): streamType, streamId,
streamIdPattern, minPosition/maxPosition, fromDate/toDate, sortBy/sortDirection, checked against
a model of the same streams."""

from __future__ import annotations

import time
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

import pytest
from rest_support import PREFIXES, TestClient, append, assert_error, error_fields

# Stream id -> events appended to it; made in this order, a few milliseconds apart.
PLAN = [
    ("order-1", 3),
    ("order_2", 1),
    ("product:789", 2),
    ("user-1", 5),
    ("order:3", 4),
    ("cart", 1),
    ("Order-9", 2),
    ("order-1", 1),  # order-1 again: updated last, still created first
]


@pytest.fixture
def streams(client: TestClient, store: str) -> list[dict[str, Any]]:
    for stream_id, n in PLAN:
        response = append(client, store, stream_id, *({"type": "t", "data": {}} for _ in range(n)))
        assert response.status_code == 201, response.text
        time.sleep(0.005)
    body = client.get(f"/event-stores/{store}/streams").json()
    assert [s["streamId"] for s in body["streams"]] == [
        "order-1",
        "order_2",
        "product:789",
        "user-1",
        "order:3",
        "cart",
        "Order-9",
    ]
    return body["streams"]  # type: ignore[no-any-return]


def listed(client: TestClient, store: str, **params: Any) -> list[str]:
    response = client.get(f"/event-stores/{store}/streams", params=params)
    assert response.status_code == 200, response.text
    return [s["streamId"] for s in response.json()["streams"]]


def test_stream_types(client: TestClient, store: str, streams: list[dict[str, Any]]) -> None:
    assert {s["streamId"]: s["streamType"] for s in streams} == {
        "order-1": "order",
        "order_2": "order",
        "product:789": "product",
        "user-1": "user",
        "order:3": "order",
        "cart": "cart",
        "Order-9": "Order",
    }
    assert listed(client, store, streamType="order") == ["order-1", "order_2", "order:3"]
    assert listed(client, store, streamType="product") == ["product:789"]
    assert listed(client, store, streamType=["cart", "user"]) == ["user-1", "cart"]
    assert listed(client, store, streamType="Order") == ["Order-9"]
    assert listed(client, store, streamType="ord") == []


def test_filters_against_a_model(
    client: TestClient, store: str, streams: list[dict[str, Any]], base: str
) -> None:
    created = [s["createdAt"] for s in streams]
    cases: list[dict[str, Any]] = [
        {},
        {"streamId": "user-1"},
        {"streamId": "nope"},
        {"streamIdPattern": "order*"},
        {"streamIdPattern": "*-*"},
        {"streamIdPattern": "*:7*9"},
        {"streamIdPattern": "cart"},
        {"minPosition": 1},
        {"maxPosition": 1},
        {"minPosition": 2, "maxPosition": 3},
        {"minPosition": 9},
        {"fromDate": created[3]},
        {"toDate": created[2]},
        {"fromDate": created[1], "toDate": created[4]},
        {"streamType": "order", "minPosition": 3},
        {"streamIdPattern": "*r*", "fromDate": created[2], "maxPosition": 3},
        {"search": "ORDER"},
        {"search": "der", "streamType": "order", "streamIdPattern": "*_*"},
    ]

    def model(case: dict[str, Any]) -> list[str]:
        kept = []
        for s in streams:
            sid = s["streamId"]
            if "streamId" in case and sid != case["streamId"]:
                continue
            if "streamIdPattern" in case and not fnmatchcase(sid, case["streamIdPattern"]):
                continue
            if "streamType" in case and s["streamType"] != case["streamType"]:
                continue
            if "search" in case and case["search"].lower() not in sid.lower():
                continue
            if "minPosition" in case and s["streamPosition"] < case["minPosition"]:
                continue
            if "maxPosition" in case and s["streamPosition"] > case["maxPosition"]:
                continue
            when = datetime.fromisoformat(s["createdAt"])
            if "fromDate" in case and when < datetime.fromisoformat(case["fromDate"]):
                continue
            if "toDate" in case and when > datetime.fromisoformat(case["toDate"]):
                continue
            kept.append(sid)
        return kept

    for case in cases:
        want = model(case)
        body = client.get(f"{base}/{store}/streams", params=case).json()
        assert [s["streamId"] for s in body["streams"]] == want, case
        assert body["pagination"] == {
            "limit": 100,
            "offset": 0,
            "total": len(want),
            "hasMore": False,
        }
        if len(want) > 1:
            page = client.get(
                f"{base}/{store}/streams", params={**case, "limit": 1, "offset": 1}
            ).json()
            assert [s["streamId"] for s in page["streams"]] == want[1:2], case
            assert page["pagination"]["total"] == len(want)
            assert page["pagination"]["hasMore"] == (len(want) > 2)


def test_orders(client: TestClient, store: str, streams: list[dict[str, Any]]) -> None:
    by_creation = [s["streamId"] for s in streams]
    assert listed(client, store, sortBy="createdAt") == by_creation
    assert listed(client, store, sortDirection="desc") == by_creation[::-1]
    assert (
        listed(client, store, sortBy="createdAt", sortDirection="desc", limit=2, offset=1)
        == (by_creation[::-1][1:3])
    )
    assert listed(client, store, sortBy="streamId") == sorted(by_creation)
    assert listed(client, store, sortBy="streamId", sortDirection="desc") == sorted(
        by_creation, reverse=True
    )
    updated = sorted(streams, key=lambda s: s["updatedAt"])
    assert listed(client, store, sortBy="updatedAt") == [s["streamId"] for s in updated]
    assert listed(client, store, sortBy="updatedAt")[-1] == "order-1"
    by_position = sorted(streams, key=lambda s: s["streamPosition"])  # stable: creation order
    assert listed(client, store, sortBy="streamPosition") == [s["streamId"] for s in by_position]
    assert listed(client, store, sortBy="streamPosition", sortDirection="desc")[0] == "user-1"
    assert listed(client, store, sortBy="streamId", streamType="order", includeCount="true") == [
        "order-1",
        "order:3",
        "order_2",
    ]


def test_streams_of_one_type(client: TestClient, store: str, streams: list[dict[str, Any]]) -> None:
    for base in PREFIXES:
        url = f"{base}/{store}/stream-types/order/streams"
        for params in ({}, {"sortBy": "streamId"}, {"limit": 1, "offset": 1}, {"minPosition": 3}):
            by_type = client.get(url, params=params).json()
            assert (
                by_type
                == client.get(
                    f"{base}/{store}/streams", params={**params, "streamType": "order"}
                ).json()
            )
        assert [s["streamId"] for s in client.get(url).json()["streams"]] == [
            "order-1",
            "order_2",
            "order:3",
        ]
        empty = client.get(f"{base}/{store}/stream-types/nothing/streams").json()
        assert empty["streams"] == [] and empty["pagination"]["total"] == 0
        response = client.get(url, params={"streamType": "user"})
        assert error_fields(assert_error(response, 400, "VALIDATION_ERROR")) == ["streamType"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sortBy": "type"}, "sortBy"),
        ({"sortBy": "globalPosition"}, "sortBy"),
        ({"sortDirection": "down"}, "sortDirection"),
        ({"minPosition": -1}, "minPosition"),
        ({"maxPosition": "x"}, "maxPosition"),
        ({"fromDate": "2024-02-30"}, "fromDate"),
        ({"toDate": "last week"}, "toDate"),
        ({"streamType": ""}, "streamType"),
        ({"streamId": ""}, "streamId"),
        ({"streamIdPattern": "*a" * 17}, "streamIdPattern"),
        ({"streamIdPattern": "a\u0001"}, "streamIdPattern"),
        ({"includeCount": "perhaps"}, "includeCount"),
        ({"type": "order.*"}, "type"),
        ({"includeMetadata": "perhaps"}, "includeMetadata"),
        ({"includeArchived": "perhaps"}, "includeArchived"),
    ],
)
def test_bad_list_options(
    client: TestClient, store: str, params: dict[str, Any], field: str
) -> None:
    for base in PREFIXES:
        response = client.get(f"{base}/{store}/streams", params=params)
        assert error_fields(assert_error(response, 400, "VALIDATION_ERROR")) == [field]
