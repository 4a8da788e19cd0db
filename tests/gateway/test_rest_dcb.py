"""DeltaBase's DCB API and atomic multi-stream append over REST, sent in the shapes DeltaBase's
documentation gives (reference/dcb, concepts/dynamic-consistency-boundary), on real Redis."""

from __future__ import annotations

from typing import Any

from rest_support import TestClient, assert_error

STORE = "dcb"

# DeltaBase's reference example (POST /event-stores/{eventStoreName}/events), verbatim but for
# `after`, which the example sets to 123 on a store we make empty.
REGISTER = {
    "events": [
        {
            "type": "UserRegistered",
            "data": {"userId": "u1", "username": "alice"},
            "tags": ["username:alice"],
        }
    ],
    "condition": {
        "failIfEventsMatch": {"items": [{"types": ["UserRegistered"], "tags": ["username:alice"]}]},
        "after": 0,
    },
}
QUERY = {
    "query": {"items": [{"types": ["UserRegistered"], "tags": ["username:alice"]}]},
    "after": 0,
    "limit": 1000,
}


def make_store(client: TestClient, base: str) -> str:
    assert client.post(base, json={"name": STORE}).status_code == 201
    return f"{base}/{STORE}"


def test_the_documented_dcb_flow_unique_usernames(client: TestClient, base: str) -> None:
    url = make_store(client, base)
    first = client.post(f"{url}/events", json=REGISTER)
    assert first.status_code == 201, first.text
    assert first.json()["lastPosition"] == 1
    # readByQuery -> events + lastPosition
    read = client.post(f"{url}/query", json=QUERY)
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["lastPosition"] == 1
    (event,) = body["events"]
    assert event["type"] == "UserRegistered" and event["tags"] == ["username:alice"]
    assert event["streamId"] == "__dcb__" and event["globalPosition"] == 1
    assert event["data"] == {"userId": "u1", "username": "alice"}
    # A second registration of the same username, conditioned on what was read: refused.
    again = client.post(f"{url}/events", json=REGISTER)
    assert again.status_code == 409
    conflict = again.json()
    assert conflict["error"] == "Append condition failed"
    assert conflict["conflictingPositions"] == [1] and conflict["afterPosition"] == 0
    assert isinstance(conflict["details"], str)
    # No ``after``: from the start, and the answer says so with a number, as DeltaBase's does.
    unbounded = {
        **REGISTER,
        "condition": {"failIfEventsMatch": REGISTER["condition"]["failIfEventsMatch"]},
    }
    conflict = client.post(f"{url}/events", json=unbounded).json()
    assert (conflict["conflictingPositions"], conflict["afterPosition"]) == ([1], 0)
    # After the position the reader saw, nothing conflicts: bob may register.
    bob: dict[str, Any] = {
        "events": [
            {"type": "UserRegistered", "data": {"username": "bob"}, "tags": ["username:bob"]}
        ],
        "condition": {
            "failIfEventsMatch": {
                "items": [{"types": ["UserRegistered"], "tags": ["username:bob"]}]
            },
            "after": body["lastPosition"],
        },
    }
    assert client.post(f"{url}/events", json=bob).status_code == 201
    everyone = client.post(
        f"{url}/query", json={"query": {"items": [{"types": ["UserRegistered"]}]}}
    ).json()
    assert [e["data"]["username"] for e in everyone["events"]] == ["alice", "bob"]
    # The reserved stream is the DCB API's alone.
    assert_error(client.get(f"{url}/streams/__dcb__"), 400, "VALIDATION_ERROR")
    assert_error(
        client.post(f"{url}/streams/__dcb__", json={"events": [{"type": "x", "data": {}}]}),
        400,
        "VALIDATION_ERROR",
    )


def test_dcb_bad_input(client: TestClient, base: str) -> None:
    url = make_store(client, base)
    cases = [
        {"events": [{"type": "A", "data": {}, "tags": ["a,b"]}]},  # commas are forbidden
        {"events": [{"type": "A", "data": {}}], "condition": {"failIfEventsMatch": {"items": []}}},
        {
            "events": [{"type": "A", "data": {}}],
            "condition": {"failIfEventsMatch": {"items": [{}]}},
        },
        {"events": [{"type": "A", "data": {}}], "condition": {"after": 3}},
        {"events": []},
    ]
    for body in cases:
        assert_error(client.post(f"{url}/events", json=body), 400, "VALIDATION_ERROR")
    assert_error(
        client.post(f"{url}/query", json={"query": {"items": [{"x": 1}]}}), 400, "VALIDATION_ERROR"
    )


def test_query_errors_name_the_fields_as_written(client: TestClient, base: str) -> None:
    """The body's ``query`` field is named ``query`` (not taken for the URL's query string); a
    field the body does not have is named too (a black-box probe's made-up ``match`` got 200)."""
    url = make_store(client, base)
    item = {"types": ["A"]}
    cases = [
        ({}, ["query"]),
        ({"querry": {"items": [item]}}, ["query", "querry"]),
        ({"query": {}}, ["query.items"]),
        ({"query": {"items": [{"types": ["A"], "tagz": ["x"]}]}}, ["query.items.0.tagz"]),
        ({"query": {"items": [item], "extra": 1}}, ["query.extra"]),
        ({"query": {"items": [item]}, "after": -1}, ["after"]),
        # A field the body does not have is refused, never a filter silently not applied.
        ({"query": {"items": [item]}, "match": {"data": {"a": 1}}}, ["match"]),
        ({"query": {"items": [item]}, "afterPosition": 3}, ["afterPosition"]),
    ]
    for body, fields in cases:
        error = assert_error(client.post(f"{url}/query", json=body), 400, "VALIDATION_ERROR")
        assert [d["field"] for d in error["details"]] == fields, body


def test_stream_appends_carry_tags_and_string_schema_versions(
    client: TestClient, base: str
) -> None:
    url = make_store(client, base)
    response = client.post(
        f"{url}/streams/product:789",
        json={
            "events": [
                {
                    "type": "product.created",
                    "data": {"sku": "x"},
                    "schemaVersion": "1.0.0",
                    "tags": ["sku:x"],
                }
            ]
        },
    )
    assert response.status_code == 201, response.text
    (event,) = response.json()["events"]
    assert event["schemaVersion"] == "1.0.0" and event["tags"] == ["sku:x"]
    read = client.get(f"{url}/streams/product:789").json()["events"]
    assert read == response.json()["events"]
    found = client.post(f"{url}/query", json={"query": {"items": [{"tags": ["sku:x"]}]}})
    assert [e["globalPosition"] for e in found.json()["events"]] == [1]


def test_multi_stream_append_is_all_or_nothing(client: TestClient, base: str) -> None:
    url = make_store(client, base)
    # DeltaBase's multiStreamAppend example, as the HTTP body.
    body = {
        "streams": [
            {
                "streamId": "order-123",
                "events": [{"type": "order.created", "data": {"orderId": "123"}}],
                "expectedStreamVersion": "no_stream",
            },
            {
                "streamId": "customer-456",
                "events": [{"type": "customer.orderAdded", "data": {"orderId": "123"}}],
                "expectedStreamVersion": 7,
            },
        ]
    }
    refused = client.post(f"{url}/streams", json=body)
    error = assert_error(refused, 409, "STREAM_VERSION_CONFLICT")
    assert error["details"]["streamId"] == "customer-456"
    assert client.get(f"{url}/streams/order-123").json()["events"] == []  # nothing written
    body["streams"][1]["expectedStreamVersion"] = "no_stream"
    done = client.post(f"{url}/streams", json=body, headers={"Idempotency-Key": "k1"})
    assert done.status_code == 201, done.text
    result = done.json()
    assert [s["streamId"] for s in result["streams"]] == ["order-123", "customer-456"]
    assert result["lastPosition"] == result["globalPosition"] == 2  # (DeltaBase's guide reads it)
    assert {e["transactionId"] for e in result["events"]} == {result["transactionId"]}
    assert [e["globalPosition"] for e in result["events"]] == [1, 2]
    replay = client.post(f"{url}/streams", json=body, headers={"Idempotency-Key": "k1"})
    assert replay.status_code == 201 and replay.json() == result
    assert client.get(f"{base}/{STORE}").json()["statistics"]["headPosition"] == 2


def test_the_dcb_stream_is_neither_listed_nor_counted(client: TestClient, base: str) -> None:
    """DCB events live in the reserved stream ``__dcb__``, which every stream endpoint refuses:
    the stream list and the store's stream count leave it out too, at every page and order."""
    url = make_store(client, base)
    for i, stream in enumerate(["a-1", None, "b-1", "c-1"]):
        if stream is None:
            response = client.post(f"{url}/events", json={"events": [{"type": "X", "tags": ["t"]}]})
        else:
            response = client.post(f"{url}/streams/{stream}", json={"events": [{"type": f"T{i}"}]})
        assert response.status_code == 201, response.text
    assert client.get(url).json()["statistics"]["totalStreams"] == 3
    for order in ("asc", "desc"):
        for offset in range(4):
            for limit in (1, 2, 3):
                params = {"sortDirection": order, "offset": offset, "limit": limit}
                listed = client.get(f"{url}/streams", params=params).json()
                want = ["a-1", "b-1", "c-1"][:: 1 if order == "asc" else -1][
                    offset : offset + limit
                ]
                assert [s["streamId"] for s in listed["streams"]] == want, params
                assert listed["pagination"]["total"] == 3, params
    listed = client.get(f"{url}/streams", params={"streamIdPattern": "*"}).json()
    assert [s["streamId"] for s in listed["streams"]] == ["a-1", "b-1", "c-1"]


def test_multi_stream_append_names_each_stream_once(client: TestClient, base: str) -> None:
    """A stream given twice is refused (its expected version would be ambiguous), whatever the
    versions say, and nothing is written."""
    url = make_store(client, base)
    part = {"streamId": "d-1", "events": [{"type": "t", "data": {}}]}
    for expected in (None, "no_stream"):
        parts = [dict(part), {"streamId": "e-1", "events": part["events"]}, dict(part)]
        if expected is not None:
            for p in parts:
                p["expectedStreamVersion"] = expected
        refused = client.post(f"{url}/streams", json={"streams": parts})
        error = assert_error(refused, 400, "VALIDATION_ERROR")
        assert [d["field"] for d in error["details"]] == ["streams.2.streamId"]
    assert client.get(f"{base}/{STORE}").json()["statistics"]["headPosition"] == 0


def test_a_dcb_append_repeated_with_its_idempotency_key_appends_nothing(
    client: TestClient, base: str
) -> None:
    """``Idempotency-Key`` (or the body's ``idempotencyKey``) on a DCB append, as on the other
    appends: the repeat gets the first answer, status and body, and writes nothing."""
    url = make_store(client, base)
    done = client.post(f"{url}/events", json=REGISTER, headers={"Idempotency-Key": "dk"})
    assert done.status_code == 201, done.text
    again = client.post(f"{url}/events", json=REGISTER, headers={"Idempotency-Key": "dk"})
    assert again.status_code == 201 and again.json() == done.json()
    refused = client.post(f"{url}/events", json={**REGISTER, "idempotencyKey": "dk2"})
    conflict = refused.json()
    assert refused.status_code == 409 and conflict["conflictingPositions"] == [1]
    unconditional = {"events": REGISTER["events"], "idempotencyKey": "dk2"}
    repeated = client.post(f"{url}/events", json=unconditional)
    assert repeated.status_code == 409 and repeated.json() == conflict
    assert client.get(f"{base}/{STORE}").json()["statistics"]["totalEvents"] == 1
    bad = client.post(f"{url}/events", json={**REGISTER, "idempotencyKey": ""})
    assert_error(bad, 400, "VALIDATION_ERROR")
    both = {**REGISTER, "idempotencyKey": "dk3"}
    bad = client.post(f"{url}/events", json=both, headers={"Idempotency-Key": "dk4"})
    assert_error(bad, 400, "VALIDATION_ERROR")  # two keys that differ: give one


def test_an_after_past_the_head_is_another_historys_and_fails_the_condition(
    client: TestClient, base: str
) -> None:
    """``after`` beyond the store's head (a position from before the store was created again,
    or from writes a failover lost) cannot be checked: 409, the head named, nothing written."""
    url = make_store(client, base)
    assert client.post(f"{url}/events", json=REGISTER).status_code == 201  # position 1
    stale = {**REGISTER, "condition": {**REGISTER["condition"], "after": 99}}
    refused = client.post(f"{url}/events", json=stale)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["error"] == "Append condition failed"
    assert (body["conflictingPositions"], body["afterPosition"], body["headPosition"]) == (
        [],
        99,
        1,
    )
    assert "past the store's head" in body["message"]
    assert client.get(f"{base}/{STORE}").json()["statistics"]["headPosition"] == 1
    at_head = {
        **REGISTER,
        "condition": {"failIfEventsMatch": {"items": [{"types": ["X"]}]}, "after": 1},
    }
    assert client.post(f"{url}/events", json=at_head).status_code == 201


def test_multi_stream_append_names_each_bad_stream_id_where_it_is(
    client: TestClient, base: str
) -> None:
    """Every bad field of the body is listed, each named by where it is: a reserved or bad
    stream id in ``streams.1.streamId``, beside a bad event type elsewhere."""
    url = make_store(client, base)
    good = {"streamId": "ok", "events": [{"type": "t"}]}
    for stream_id in ("__dcb__", "bad\u0001id"):
        body = {"streams": [good, {"streamId": stream_id, "events": [{"type": "t"}]}]}
        error = assert_error(client.post(f"{url}/streams", json=body), 400, "VALIDATION_ERROR")
        assert [d["field"] for d in error["details"]] == ["streams.1.streamId"], error
        body["streams"][0] = {"streamId": "ok", "events": [{"type": ""}]}
        error = assert_error(client.post(f"{url}/streams", json=body), 400, "VALIDATION_ERROR")
        fields = {d["field"] for d in error["details"]}
        assert "streams.1.streamId" in fields and len(fields) == 2, error
    assert client.get(f"{base}/{STORE}").json()["statistics"]["headPosition"] == 0
