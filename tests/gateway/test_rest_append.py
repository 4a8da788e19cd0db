"""Appending over REST: the 201 body, expected versions and conflicts, idempotency."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from rest_support import TestClient, append, assert_error, head

APPEND_FIELDS = {
    "success",
    "streamId",
    "nextExpectedStreamVersion",
    "currentStreamVersion",
    "eventsWritten",
    "globalPosition",
    "transactionId",
    # CONTRACT section 7: the written events, as a read returns them, and DeltaBase's names.
    "events",
    "createdNewStream",
    "eventsAppended",
}


@pytest.mark.parametrize("suffix", ["", "/events"])
def test_append_201(client: TestClient, store: str, base: str, suffix: str) -> None:
    url = f"{base}/{store}/streams/order-1{suffix}"
    first = client.post(
        url,
        json={
            "events": [
                {"type": "order.placed", "data": {"total": 5}, "metadata": {"u": "x"}},
                {"type": "order.paid", "data": None, "schemaVersion": 2},
            ]
        },
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert set(body) == APPEND_FIELDS
    assert body["success"] is True
    assert body["streamId"] == "order-1"
    assert body["nextExpectedStreamVersion"] == body["currentStreamVersion"] == 2
    assert body["eventsWritten"] == 2
    assert body["globalPosition"] == 2
    assert isinstance(body["transactionId"], str) and body["transactionId"]
    assert body["eventsAppended"] == 2 and body["createdNewStream"] is True

    second = client.post(url, json={"events": [{"type": "order.shipped", "data": {}}]})
    assert second.status_code == 201
    assert second.json()["globalPosition"] == 3
    assert second.json()["currentStreamVersion"] == 3
    assert second.json()["createdNewStream"] is False

    read = client.get(f"{base}/{store}/streams/order-1").json()
    assert body["events"] + second.json()["events"] == read["events"]
    assert read["currentStreamVersion"] == 3
    e0, e1, e2 = read["events"]
    assert (e0["type"], e0["data"], e0["metadata"], e0["schemaVersion"]) == (
        "order.placed",
        {"total": 5},
        {"u": "x"},
        1,
    )
    assert (e1["type"], e1["data"], e1["schemaVersion"]) == ("order.paid", None, 2)
    assert "metadata" not in e1
    assert [e["streamPosition"] for e in (e0, e1, e2)] == [0, 1, 2]
    assert [e["globalPosition"] for e in (e0, e1, e2)] == [1, 2, 3]
    assert e0["transactionId"] == e1["transactionId"] == body["transactionId"]
    assert e2["transactionId"] == second.json()["transactionId"]
    assert len({e["eventId"] for e in (e0, e1, e2)}) == 3
    for e in (e0, e1, e2):
        assert e["streamId"] == "order-1"
        assert e["createdAt"].endswith("Z")
        created = datetime.fromisoformat(e["createdAt"].replace("Z", "+00:00"))
        assert created.utcoffset() == timedelta(0)


def test_metadata_null_is_metadata_absent(client: TestClient, store: str, base: str) -> None:
    """As docs/api.md says: ``null`` is taken as no metadata (what a writer that spells unset
    fields as ``null`` means); any other value that is not an object is refused."""
    made = append(client, store, "s-null", {"type": "a", "data": {}, "metadata": None})
    assert made.status_code == 201, made.text
    (event,) = client.get(f"{base}/{store}/streams/s-null").json()["events"]
    assert "metadata" not in event and made.json()["events"] == [event]
    for bad in ("x", 1, [], True):
        refused = append(client, store, "s-null", {"type": "a", "data": {}, "metadata": bad})
        body = assert_error(refused, 400, "VALIDATION_ERROR")
        assert "events.0.metadata" in str(body["details"]), body
    assert len(client.get(f"{base}/{store}/streams/s-null").json()["events"]) == 1


@pytest.mark.parametrize("where", ["top", "options"])
@pytest.mark.parametrize(
    ("existing", "expected", "ok"),
    [
        (0, "no_stream", True),
        (1, "no_stream", False),
        (0, "stream_exists", False),
        (1, "stream_exists", True),
        (0, "any", True),
        (1, "any", True),
        (0, 0, True),
        (1, 1, True),
        (1, 0, False),
        (1, 2, False),
    ],
)
def test_expected_stream_version(
    client: TestClient, store: str, where: str, existing: int, expected: Any, ok: bool
) -> None:
    if existing:
        assert append(client, store, "order-1").status_code == 201
    append(client, store, "noise")
    before = head(client, store)
    body: dict[str, Any] = (
        {"expectedStreamVersion": expected}
        if where == "top"
        else {"options": {"expectedStreamVersion": expected}}
    )
    response = append(client, store, "order-1", {"type": "t", "data": {}}, **body)
    if ok:
        assert response.status_code == 201, response.text
        assert response.json()["currentStreamVersion"] == existing + 1
        assert head(client, store) == before + 1
        return
    error = assert_error(response, 409, "STREAM_VERSION_CONFLICT")
    assert error["details"] == {
        "streamId": "order-1",
        "expectedVersion": expected,
        "currentVersion": existing,
    }
    assert head(client, store) == before


@pytest.mark.parametrize(
    ("top", "option", "ok"),
    [(1, 7, False), ("any", 0, False), (0, "no_stream", False), (1, 1, True), ("any", "any", True)],
)
def test_an_expected_version_given_twice_must_agree(
    client: TestClient, store: str, top: Any, option: Any, ok: bool
) -> None:
    """``expectedStreamVersion`` at the top and in ``options``: the same value is that value;
    two different ones are a 400, never one of them silently."""
    assert append(client, store, "v-1").status_code == 201
    before = head(client, store)
    response = append(
        client, store, "v-1", expectedStreamVersion=top, options={"expectedStreamVersion": option}
    )
    if ok:
        assert response.status_code == 201, response.text
        return
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert [d["field"] for d in error["details"]] == ["expectedStreamVersion"]
    assert head(client, store) == before


def test_idempotency_key_header_replays(client: TestClient, store: str, base: str) -> None:
    url = f"{base}/{store}/streams/order-1"
    payload = {"events": [{"type": "t", "data": {"n": 1}}, {"type": "t", "data": {"n": 2}}]}
    first = client.post(url, json=payload, headers={"Idempotency-Key": "abc"})
    assert first.status_code == 201
    for _ in range(2):
        again = client.post(url, json=payload, headers={"Idempotency-Key": "abc"})
        assert again.status_code == 201
        assert again.json() == first.json()
    # The other prefix reaches the same store and the same key.
    other = "/api/event-stores" if base == "/event-stores" else "/event-stores"
    across = client.post(
        f"{other}/{store}/streams/order-1", json=payload, headers={"Idempotency-Key": "abc"}
    )
    assert across.json() == first.json()
    assert head(client, store) == 2
    assert client.get(url).json()["currentStreamVersion"] == 2

    different = client.post(url, json=payload, headers={"Idempotency-Key": "xyz"})
    assert different.status_code == 201
    assert different.json()["globalPosition"] == 4

    # The header and the body's key: the same is that key; two different ones are a 400 (a
    # retry sending only the body's would append again), nothing appended.
    keyed = {**payload, "options": {"idempotencyKey": "xyz"}}
    assert client.post(url, json=keyed, headers={"Idempotency-Key": "xyz"}).json() == (
        different.json()
    )
    keyed = {**payload, "options": {"idempotencyKey": "A"}}
    refused = client.post(url, json=keyed, headers={"Idempotency-Key": "B"})
    assert [d["field"] for d in assert_error(refused, 400, "VALIDATION_ERROR")["details"]] == [
        "Idempotency-Key"
    ]
    assert head(client, store) == 4


def test_idempotency_key_option_replays(client: TestClient, store: str) -> None:
    payload = {"events": [{"type": "t", "data": {}}], "options": {"idempotencyKey": "opt-1"}}
    first = client.post(f"/event-stores/{store}/streams/s-1", json=payload)
    again = client.post(f"/event-stores/{store}/streams/s-1", json=payload)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    # The header and the option name the same key.
    header = client.post(
        f"/event-stores/{store}/streams/s-1",
        json={"events": [{"type": "t", "data": {}}]},
        headers={"Idempotency-Key": "opt-1"},
    )
    assert header.json() == first.json()
    assert head(client, store) == 1


def test_idempotent_conflict_replays_the_conflict(client: TestClient, store: str) -> None:
    url = f"/event-stores/{store}/streams/order-1"
    payload = {"events": [{"type": "t", "data": {}}], "expectedStreamVersion": 1}
    first = client.post(url, json=payload, headers={"Idempotency-Key": "k"})
    body = assert_error(first, 409, "STREAM_VERSION_CONFLICT")
    assert body["details"] == {"streamId": "order-1", "expectedVersion": 1, "currentVersion": 0}

    assert append(client, store, "order-1").status_code == 201  # now at version 1
    again = client.post(url, json=payload, headers={"Idempotency-Key": "k"})
    assert again.status_code == 409
    assert again.json() == first.json()
    assert head(client, store) == 1


def test_1000_events_is_the_limit(client: TestClient, store: str) -> None:
    events = [{"type": "bulk.item", "data": {"i": i}} for i in range(1000)]
    response = append(client, store, "bulk", *events)
    assert response.status_code == 201, response.text
    assert response.json()["eventsWritten"] == 1000
    assert response.json()["globalPosition"] == 1000


def test_append_to_missing_store(client: TestClient) -> None:
    assert_error(append(client, "missing", "s-1"), 404, "EVENT_STORE_NOT_FOUND")
    assert client.get("/event-stores").json()["totalCount"] == 0


@pytest.mark.parametrize(
    "stream_id", ["a{b}", "{x}", "*", "order:1", "with space", "ünï-流", "a|b", "50% off"]
)
def test_odd_stream_ids(client: TestClient, store: str, stream_id: str) -> None:
    path = f"/event-stores/{store}/streams/{quote(stream_id, safe='')}"
    response = client.post(path, json={"events": [{"type": "t", "data": {}}]})
    assert response.status_code == 201, response.text
    assert response.json()["streamId"] == stream_id
    read = client.get(path).json()
    assert [e["streamId"] for e in read["events"]] == [stream_id]
    queried = client.get(f"/event-stores/{store}/events", params={"streamId": stream_id}).json()
    assert [e["streamId"] for e in queried["events"]] == [stream_id]
    streams = client.get(f"/event-stores/{store}/streams").json()["streams"]
    assert [s["streamId"] for s in streams] == [stream_id]
