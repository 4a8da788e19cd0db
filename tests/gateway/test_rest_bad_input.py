"""Bad input is answered with the contract's error body and the right status, writes nothing,
and is never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_support import PREFIXES, TestClient, assert_error, error_fields, head

from gateway.app import create_app
from gateway.settings import Settings

MiB = 1024 * 1024


def nest(depth: int) -> str:
    return '{"a":' * (depth - 1) + "1" + "}" * (depth - 1)


def event(**overrides: Any) -> dict[str, Any]:
    return {"type": "order.created", "data": {}, **overrides}


def body(**overrides: Any) -> bytes:
    return json.dumps({"events": [event()], **overrides}).encode()


RAW_BODIES: list[tuple[str, bytes, str]] = [
    ("malformed", b'{"events": [', "body"),
    ("trailing-garbage", body() + b"x", "body"),
    ("empty", b"", "body"),
    ("whitespace", b"  \n", "body"),
    ("array", b"[]", "body"),
    ("string", b'"events"', "body"),
    ("number", b"42", "body"),
    ("null", b"null", "body"),
    ("nan", b'{"events": [{"type": "t", "data": {"x": NaN}}]}', "body"),
    ("infinity", b'{"events": [{"type": "t", "data": {"x": Infinity}}]}', "body"),
    ("-infinity", b'{"events": [{"type": "t", "data": {"x": -Infinity}}]}', "body"),
    ("huge-float", b'{"events": [{"type": "t", "data": {"x": 1e400}}]}', "body"),
    ("invalid-utf8", b'{"events": [{"type": "t", "data": {"x": "\xff\xfe"}}]}', "body"),
    ("lone-surrogate", b'{"events": [{"type": "t", "data": {"x": "\\ud800"}}]}', "body"),
    ("deep-10000", b"[" * 10_000 + b"]" * 10_000, "body"),
    (
        "deep-data-10000",
        ('{"events": [{"type": "t", "data": ' + nest(10_000) + "}]}").encode(),
        "body",
    ),
    (
        "deep-data-300",
        ('{"events": [{"type": "t", "data": ' + nest(300) + "}]}").encode(),
        "events.0",
    ),
    (
        "deep-metadata-300",
        ('{"events": [{"type": "t", "data": {}, "metadata": ' + nest(300) + "}]}").encode(),
        "events.0",
    ),
]

FIELD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("no-events", {}, "events"),
    ("events-null", {"events": None}, "events"),
    ("events-object", {"events": {"type": "t"}}, "events"),
    ("events-empty", {"events": []}, "events"),
    ("event-not-object", {"events": ["order.created"]}, "events.0"),
    ("type-number", {"events": [event(type=5)]}, "events.0.type"),
    ("type-null", {"events": [event(type=None)]}, "events.0.type"),
    ("type-missing", {"events": [{"data": {}}]}, "events.0.type"),
    ("type-empty", {"events": [event(type="")]}, "events.0.type"),
    ("type-control", {"events": [event(type="a\u0000b")]}, "events.0.type"),
    ("type-too-long", {"events": [event(type="t" * 257)]}, "events.0.type"),
    ("type-in-second", {"events": [event(), event(type=[])]}, "events.1.type"),
    ("data-list", {"events": [event(data=[1, 2])]}, "events.0.data"),
    ("data-string", {"events": [event(data="x")]}, "events.0.data"),
    ("data-number", {"events": [event(data=3)]}, "events.0.data"),
    ("data-bool", {"events": [event(data=True)]}, "events.0.data"),
    ("metadata-string", {"events": [event(metadata="x")]}, "events.0.metadata"),
    ("metadata-list", {"events": [event(metadata=[])]}, "events.0.metadata"),
    ("metadata-number", {"events": [event(metadata=1)]}, "events.0.metadata"),
    ("schema-past-2-53", {"events": [event(schemaVersion=2**53)]}, "events.0.schemaVersion"),
    ("schema-empty-string", {"events": [event(schemaVersion="")]}, "events.0.schemaVersion"),
    ("schema-list", {"events": [event(schemaVersion=[1])]}, "events.0.schemaVersion"),
    ("tags-not-list", {"events": [event(tags="a")]}, "events.0.tags"),
    ("tag-with-comma", {"events": [event(tags=["a,b"])]}, "events.0.tags"),
    (
        "version-negative",
        {"events": [event()], "expectedStreamVersion": -1},
        "expectedStreamVersion",
    ),
    (
        "version-bogus",
        {"events": [event()], "expectedStreamVersion": "bogus"},
        "expectedStreamVersion",
    ),
    ("version-float", {"events": [event()], "expectedStreamVersion": 1.5}, "expectedStreamVersion"),
    ("version-bool", {"events": [event()], "expectedStreamVersion": True}, "expectedStreamVersion"),
    (
        "version-numeric-string",
        {"events": [event()], "expectedStreamVersion": "0"},
        "expectedStreamVersion",
    ),
    (
        "option-version-bogus",
        {"events": [event()], "options": {"expectedStreamVersion": "x"}},
        "options.expectedStreamVersion",
    ),
    ("options-not-object", {"events": [event()], "options": 5}, "options"),
    (
        "key-empty",
        {"events": [event()], "options": {"idempotencyKey": ""}},
        "options.idempotencyKey",
    ),
    (
        "key-too-long",
        {"events": [event()], "options": {"idempotencyKey": "k" * 256}},
        "options.idempotencyKey",
    ),
    (
        "key-number",
        {"events": [event()], "options": {"idempotencyKey": 5}},
        "options.idempotencyKey",
    ),
    ("1001-events", {"events": [event(data={"i": i}) for i in range(1001)]}, "events"),
]


def post(client: TestClient, store: str, content: bytes | Iterator[bytes], **kw: Any) -> Any:
    return client.post(
        f"/event-stores/{store}/streams/order-1",
        content=content,
        headers={"content-type": "application/json", **kw.pop("headers", {})},
        **kw,
    )


@pytest.mark.parametrize(
    ("raw", "field"), [(r, f) for _, r, f in RAW_BODIES], ids=[name for name, _, _ in RAW_BODIES]
)
def test_unparsable_bodies(client: TestClient, store: str, raw: bytes, field: str) -> None:
    result = assert_error(post(client, store, raw), 400, "VALIDATION_ERROR")
    assert field in error_fields(result)
    assert head(client, store) == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [(p, f) for _, p, f in FIELD_BODIES],
    ids=[name for name, _, _ in FIELD_BODIES],
)
def test_bad_fields(client: TestClient, store: str, payload: Any, field: str) -> None:
    result = assert_error(
        post(client, store, json.dumps(payload).encode()), 400, "VALIDATION_ERROR"
    )
    fields = error_fields(result)
    assert any(f == field or f.startswith(field + ".") for f in fields), fields
    assert head(client, store) == 0


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_bad_idempotency_key_header(client: TestClient, store: str, key: str) -> None:
    result = assert_error(
        post(client, store, body(), headers={"Idempotency-Key": key}), 400, "VALIDATION_ERROR"
    )
    assert "Idempotency-Key" in error_fields(result)
    assert head(client, store) == 0


@pytest.mark.parametrize(
    "stream_id",
    ["%01", "a%0Ab", "tab%09", "x" * 257, "%7F"],
    ids=["ctl", "nl", "tab", "long", "del"],
)
def test_bad_stream_id(client: TestClient, store: str, stream_id: str) -> None:
    for response in (
        client.post(f"/event-stores/{store}/streams/{stream_id}", content=body()),
        client.get(f"/event-stores/{store}/streams/{stream_id}"),
    ):
        assert "streamId" in error_fields(assert_error(response, 400, "VALIDATION_ERROR"))
    assert head(client, store) == 0


def test_event_over_one_mib(client: TestClient, store: str) -> None:
    # Just under the 1 MiB data + metadata limit is fine ...
    fits = {"events": [event(data={"x": "a" * (MiB - 200)})]}
    assert post(client, store, json.dumps(fits).encode()).status_code == 201
    # ... 2 MiB is not, and the append is all or nothing.
    big = {"events": [event(), event(data={"x": "a" * (2 * MiB)})]}
    result = assert_error(post(client, store, json.dumps(big).encode()), 413, "PAYLOAD_TOO_LARGE")
    assert result["details"]["index"] == 1
    split = {"events": [event(data={"x": "a" * (MiB // 2 + 10)}, metadata={"y": "b" * (MiB // 2)})]}
    assert_error(post(client, store, json.dumps(split).encode()), 413, "PAYLOAD_TOO_LARGE")
    assert head(client, store) == 1


def test_body_over_eight_mib(client: TestClient, store: str) -> None:
    huge = json.dumps({"events": [event(data={"x": "a" * MiB}) for _ in range(9)]}).encode()
    assert len(huge) > 8 * MiB
    assert_error(post(client, store, huge), 413, "PAYLOAD_TOO_LARGE")

    # Without a Content-Length (chunked), the limit holds while reading.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 256 * 1024):
            yield huge[start : start + 256 * 1024]

    assert_error(post(client, store, chunks()), 413, "PAYLOAD_TOO_LARGE")
    assert head(client, store) == 0


QUERY_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("events", {"limit": 0}, "limit"),
    ("events", {"limit": "abc"}, "limit"),
    ("events", {"limit": -5}, "limit"),
    ("events", {"fromPosition": -1}, "fromPosition"),
    ("events", {"toPosition": "x"}, "toPosition"),
    ("events", {"offset": -1}, "offset"),
    ("events", {"sortDirection": "up"}, "sortDirection"),
    ("events", {"includeCount": "maybe"}, "includeCount"),
    ("events", {"type": ""}, "type"),
    ("events", {"streamId": ""}, "streamId"),
    ("events", {"streamId": "a\u0001"}, "streamId"),
    ("events", {"limit": "1e3"}, "limit"),
    ("events", {"fromPosition": 2**53 + 1}, "fromPosition"),
    ("events", {"type": [f"t{i}" for i in range(33)]}, "type"),
    ("events", {"type": "t" * 257}, "type"),
    ("events", {"type": "*a" * 17}, "type"),  # more '*' than a pattern may hold
    ("streams/order-1", {"direction": "sideways"}, "direction"),
    ("streams/order-1", {"limit": 0}, "limit"),
    ("streams/order-1", {"limit": "abc"}, "limit"),
    ("streams/order-1", {"from": -1}, "from"),
    ("streams/order-1", {"fromStreamPosition": "x"}, "fromStreamPosition"),
    ("streams/order-1", {"to": 1.5}, "to"),
    ("streams", {"limit": 0}, "limit"),
    ("streams", {"offset": "abc"}, "offset"),
    ("streams", {"search": "s" * 257}, "search"),
]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    QUERY_CASES,
    ids=[f"{p}-{next(iter(q))}-{i}" for i, (p, q, _) in enumerate(QUERY_CASES)],
)
def test_bad_query_params(
    client: TestClient, store: str, path: str, params: dict[str, Any], field: str
) -> None:
    for base in PREFIXES:
        response = client.get(f"{base}/{store}/{path}", params=params)
        result = assert_error(response, 400, "VALIDATION_ERROR")
        assert field in error_fields(result)


def test_too_many_wildcards_in_a_token_filter(client: TestClient, store: str) -> None:
    response = client.post(f"/event-stores/{store}/ws-tokens", json={"eventFilter": "*a" * 17})
    result = assert_error(response, 400, "VALIDATION_ERROR")
    assert error_fields(result) == ["eventFilter"]
    assert "more than 16 '*' wildcards" in result["message"]


def test_a_token_body_names_no_field_it_would_ignore(client: TestClient, store: str) -> None:
    """A misspelt narrowing field is refused, never a token for the whole store."""
    url = f"/event-stores/{store}/ws-tokens"
    response = client.post(url, json={"streamID": "order-7", "eventFilters": "order.*"})
    result = assert_error(response, 400, "VALIDATION_ERROR")
    assert sorted(error_fields(result)) == ["eventFilters", "streamID"]
    assert (
        client.post(url, json={"streamId": "order-7", "eventFilter": "order.*"}).status_code == 201
    )


def test_unknown_routes_and_methods(client: TestClient, store: str) -> None:
    assert_error(client.get("/no/such/route"), 404, "NOT_FOUND")
    response = client.put(f"/event-stores/{store}")
    assert response.status_code == 405 and response.json()["error"]
    assert head(client, store) == 0


# -- fuzz: no body is ever a 500 -------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)
events_st = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.text(max_size=5) | json_values,
            "data": json_values,
            "metadata": json_values,
            "schemaVersion": json_values,
        },
    ),
    max_size=3,
)
bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "events": events_st | json_values,
            "options": st.fixed_dictionaries(
                {},
                optional={
                    "expectedStreamVersion": json_values
                    | st.sampled_from(["any", "no_stream", "stream_exists"]),
                    "idempotencyKey": json_values,
                },
            )
            | json_values,
            "expectedStreamVersion": json_values | st.sampled_from(["any", "no_stream"]),
        },
    )
    | json_values
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=bodies)
def test_fuzzed_bodies_never_500(client: TestClient, store: str, payload: Any) -> None:
    before = head(client, store)
    response = post(client, store, json.dumps(payload).encode())
    assert response.status_code in (201, 400, 409), (response.status_code, response.text)
    if response.status_code == 201:
        written = response.json()["eventsWritten"]
        assert head(client, store) == before + written
    else:
        assert_error(response, response.status_code, response.json()["error"])
        assert head(client, store) == before


def test_where_appends_create_stores_a_name_that_cannot_be_one_is_a_400(redis_url: str) -> None:
    """With stores created on first use (the dev mode), an append to a name no store can have
    says why (a 404 would send its author looking for a missing store); without, it is unknown."""
    for creating, status, code in (
        (True, 400, "VALIDATION_ERROR"),
        (False, 404, "EVENT_STORE_NOT_FOUND"),
    ):
        config = Settings(redis_url=redis_url, auth="disabled", auto_create_stores=creating)
        with TestClient(create_app(config)) as client:
            for name in ("rs", "Orders", "a" * 64):
                response = client.post(
                    f"/event-stores/{name}/streams/o-1", json={"events": [{"type": "x"}]}
                )
                result = assert_error(response, status, code)
                if creating:
                    assert error_fields(result) == ["store"] and "3 to 63" in result["message"]
            if creating:
                made = client.post(
                    "/event-stores/rs2/streams/o-1", json={"events": [{"type": "x"}]}
                )
                assert made.status_code == 201
