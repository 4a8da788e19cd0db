"""Reading over REST: one stream, the whole store's events, the list of streams."""

from __future__ import annotations

from typing import Any

from rest_support import TestClient, append

EVENT_FIELDS = {
    "streamId",
    "streamPosition",
    "globalPosition",
    "eventId",
    "type",
    "data",
    "schemaVersion",
    "transactionId",
    "createdAt",
}


def fill(client: TestClient, store: str) -> list[tuple[int, str, str]]:
    """Twelve events over three streams; returns (globalPosition, streamId, type)."""
    plan = [
        ("order-1", "order.created"),
        ("order-2", "order.created"),
        ("user-1", "user.created"),
        ("order-1", "order.shipped"),
        ("order-1", "payment.created"),
        ("user-1", "user.renamed"),
        ("order-2", "order.cancelled"),
        ("order-1", "order.delivered"),
        ("user-1", "user.created"),
        ("order-2", "createdish"),
        ("order-1", "order.archived"),
        ("user-1", "user.deleted"),
    ]
    for stream_id, event_type in plan:
        response = append(client, store, stream_id, {"type": event_type, "data": {"t": 1}})
        assert response.status_code == 201
    return [(g, sid, t) for g, (sid, t) in enumerate(plan, start=1)]


def positions(body: dict[str, Any]) -> list[int]:
    for event in body["events"]:
        assert set(event) >= EVENT_FIELDS, event
        assert type(event["globalPosition"]) is int and type(event["streamPosition"]) is int
    return [e["globalPosition"] for e in body["events"]]


# -- one stream ------------------------------------------------------------------------------


READ_CASES: list[tuple[dict[str, Any], list[int]]] = [
    ({}, [0, 1, 2, 3, 4]),
    ({"direction": "forward"}, [0, 1, 2, 3, 4]),
    ({"direction": "backward"}, [4, 3, 2, 1, 0]),
    ({"from": 2}, [2, 3, 4]),
    ({"fromStreamPosition": 3}, [3, 4]),
    ({"from": 1, "to": 3}, [1, 2, 3]),
    ({"from": 1, "limit": 2}, [1, 2]),
    ({"limit": 1}, [0]),
    ({"from": 9}, []),
    ({"from": 3, "to": 1}, []),
    ({"direction": "backward", "limit": 2}, [4, 3]),
    ({"direction": "backward", "from": 2}, [2, 1, 0]),
    ({"direction": "backward", "from": 3, "to": 2}, [3, 2]),
    ({"direction": "backward", "from": 99, "limit": 2}, [4, 3]),
    ({"limit": 5000}, [0, 1, 2, 3, 4]),
]


def test_read_stream(client: TestClient, store: str, base: str) -> None:
    fill(client, store)
    for params, want in READ_CASES:
        response = client.get(f"{base}/{store}/streams/order-1", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"events", "currentStreamVersion"}
        assert body["currentStreamVersion"] == 5
        positions(body)
        assert [e["streamPosition"] for e in body["events"]] == want, params
        assert {e["streamId"] for e in body["events"]} <= {"order-1"}


def test_read_missing_stream(client: TestClient, store: str, base: str) -> None:
    for params in ({}, {"direction": "backward"}, {"from": 3}):
        response = client.get(f"{base}/{store}/streams/nothing-here", params=params)
        assert response.status_code == 200
        assert response.json() == {"events": [], "currentStreamVersion": 0}


def test_read_stream_limit_is_at_most_1000(client: TestClient, store: str) -> None:
    append(client, store, "big", *({"type": "t", "data": {"i": i}} for i in range(1000)))
    append(client, store, "big", *({"type": "t", "data": {"i": i}} for i in range(5)))
    body = client.get(f"/event-stores/{store}/streams/big", params={"limit": 5000}).json()
    assert body["currentStreamVersion"] == 1005
    assert len(body["events"]) == 1000
    assert body["events"][-1]["streamPosition"] == 999


# -- the store's events ----------------------------------------------------------------------


def query(client: TestClient, store: str, base: str = "/event-stores", **params: Any) -> Any:
    response = client.get(f"{base}/{store}/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_query_filters(client: TestClient, store: str, base: str) -> None:
    log = fill(client, store)

    def expect(pred: Any) -> list[int]:
        return [g for g, sid, t in log if pred(sid, t)]

    body = query(client, store, base)
    assert set(body) == {"events", "pagination"}
    assert positions(body) == list(range(1, 13))
    assert body["pagination"] == {"limit": 100, "offset": 0, "hasMore": False}

    assert positions(query(client, store, base, type="*")) == list(range(1, 13))
    assert positions(query(client, store, base, type="order.*")) == expect(
        lambda s, t: t.startswith("order.")
    )
    assert positions(query(client, store, base, type="*.created")) == expect(
        lambda s, t: t.endswith(".created")
    )
    assert positions(query(client, store, base, type="user.created")) == [3, 9]
    assert positions(query(client, store, base, type=["order.created", "user.*"])) == expect(
        lambda s, t: t == "order.created" or t.startswith("user.")
    )
    assert positions(query(client, store, base, streamId="order-2")) == [2, 7, 10]
    assert positions(query(client, store, base, streamId="order-1", type="order.*")) == [
        1,
        4,
        8,
        11,
    ]
    assert positions(query(client, store, base, streamId="nope")) == []
    assert positions(query(client, store, base, type="no.such")) == []


def test_query_positions_and_paging(client: TestClient, store: str) -> None:
    fill(client, store)
    assert positions(query(client, store, fromPosition=4, toPosition=6)) == [4, 5, 6]
    assert positions(query(client, store, fromPosition=12)) == [12]
    assert positions(query(client, store, fromPosition=13)) == []
    assert positions(query(client, store, toPosition=1)) == [1]
    assert positions(query(client, store, fromPosition=0, toPosition=0)) == []
    assert positions(query(client, store, fromPosition=7, toPosition=3)) == []
    assert positions(query(client, store, fromPosition=2**53, toPosition=2**53)) == []

    page = query(client, store, limit=5, offset=5, includeCount="true")
    assert positions(page) == [6, 7, 8, 9, 10]
    assert page["pagination"] == {"limit": 5, "offset": 5, "total": 12, "hasMore": True}
    page = query(client, store, limit=5, offset=10, includeCount="true")
    assert positions(page) == [11, 12]
    assert page["pagination"] == {"limit": 5, "offset": 10, "total": 12, "hasMore": False}
    page = query(client, store, limit=5, offset=5)
    assert "total" not in page["pagination"] and page["pagination"]["hasMore"] is True

    for desc in ("desc", "backward"):
        page = query(client, store, sortDirection=desc, limit=3, offset=1, includeCount="true")
        assert positions(page) == [11, 10, 9]
        assert page["pagination"]["hasMore"] is True and page["pagination"]["total"] == 12
        assert positions(
            query(client, store, sortDirection=desc, fromPosition=3, toPosition=5)
        ) == [5, 4, 3]
        assert positions(
            query(client, store, sortDirection=desc, type="user.*", streamId="user-1")
        ) == [12, 9, 6, 3]
    for asc in ("asc", "forward"):
        assert positions(query(client, store, sortDirection=asc, limit=2)) == [1, 2]

    page = query(client, store, type="*.created", includeCount="true", limit=2)
    assert positions(page) == [1, 2]
    assert page["pagination"]["total"] == 5 and page["pagination"]["hasMore"] is True


def test_query_limits(client: TestClient, store: str) -> None:
    append(client, store, "bulk", *({"type": "t", "data": {"i": i}} for i in range(1000)))
    append(client, store, "bulk", *({"type": "t", "data": {"i": i}} for i in range(50)))
    default = query(client, store)
    assert len(default["events"]) == 100 and default["pagination"]["limit"] == 100
    assert default["pagination"]["hasMore"] is True
    clamped = query(client, store, limit=5000)
    assert clamped["pagination"]["limit"] == 1000
    assert positions(clamped) == list(range(1, 1001))
    assert clamped["pagination"]["hasMore"] is True
    rest = query(client, store, limit=1000, offset=1000)
    assert positions(rest) == list(range(1001, 1051))
    assert rest["pagination"]["hasMore"] is False


# -- streams ---------------------------------------------------------------------------------


def test_list_streams(client: TestClient, store: str, base: str) -> None:
    empty = client.get(f"{base}/{store}/streams").json()
    assert empty["streams"] == []
    assert empty["pagination"]["total"] == 0 and empty["pagination"]["hasMore"] is False

    fill(client, store)
    body = client.get(f"{base}/{store}/streams").json()
    assert set(body) == {"streams", "pagination"}
    streams = body["streams"]
    assert [s["streamId"] for s in streams] == ["order-1", "order-2", "user-1"]
    assert [s["streamPosition"] for s in streams] == [4, 2, 3]
    assert [s["streamType"] for s in streams] == ["order", "order", "user"]
    for s in streams:
        assert set(s) == {"streamId", "streamPosition", "streamType", "createdAt", "updatedAt"}
        assert s["createdAt"] <= s["updatedAt"]
    assert body["pagination"] == {"limit": 100, "offset": 0, "total": 3, "hasMore": False}

    page = client.get(f"{base}/{store}/streams", params={"limit": 2}).json()
    assert [s["streamId"] for s in page["streams"]] == ["order-1", "order-2"]
    assert page["pagination"] == {"limit": 2, "offset": 0, "total": 3, "hasMore": True}
    page = client.get(f"{base}/{store}/streams", params={"limit": 2, "offset": 2}).json()
    assert [s["streamId"] for s in page["streams"]] == ["user-1"]
    assert page["pagination"] == {"limit": 2, "offset": 2, "total": 3, "hasMore": False}
