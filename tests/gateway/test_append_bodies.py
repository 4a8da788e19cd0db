"""The fast reading of the append bodies (``gateway/http/bodies.py``) against the models it stands
in for: on any body it either reads exactly what the model reads or steps aside, never accepting
what the model refuses; and every bad body gets the same answer, byte for byte, as on the model's
own path (the route with the fast reading switched off, which is how appends read bodies before).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from rest_support import TestClient, assert_error, head

from gateway.errors import ApiError
from gateway.http import bodies
from gateway.http.bodies import (
    AppendBody,
    AppendRequest,
    DcbAppendBody,
    DcbRequest,
    StreamsAppendBody,
    StreamsRequest,
    fast_append,
    fast_dcb,
    fast_streams,
)

# -- generated bodies: every field good, or any field good or bad -----------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
objects = st.dictionaries(st.text(max_size=4), json_values, max_size=3)
SMALL_PART = {"streamId": "s", "events": [{"type": "a"}]}
Pick = Any  # (good strategy, bad strategy) -> strategy


def strategies(pick: Pick) -> tuple[Any, Any, Any]:
    """Append, streams and DCB bodies whose every field is ``pick(good, bad)``."""
    name = pick(
        st.sampled_from(["order.placed", "a", "t" * 256, "é.∂", "user:x"]),
        st.sampled_from(["t" * 257, "", "a\x00b", "a\x7f", "\x1f"]) | json_values,
    )
    tags = pick(
        st.lists(st.sampled_from(["a", "b", "user:alice", "t" * 256]), max_size=4) | st.none(),
        st.lists(st.sampled_from(["a,b", "", "x\x01"]) | json_values, min_size=1, max_size=2)
        | st.lists(st.just("t"), min_size=64, max_size=66)
        | json_values,
    )
    version = pick(
        st.sampled_from(["any", "no_stream", "stream_exists"]) | st.integers(0, 2**64 - 1),
        st.sampled_from(["bogus", "0", "", -1, 2**64]) | json_values,
    )
    schema_version = pick(
        st.integers(1, 1_000_000) | st.text(min_size=1, max_size=64),
        st.sampled_from([0, 1_000_001, True, False, None, "", "v" * 65]) | json_values,
    )
    key = pick(
        st.text(min_size=1, max_size=8) | st.just("k" * 255),
        st.sampled_from(["", "k" * 256]) | json_values,
    )
    optional_object = pick(objects | st.none(), json_values)
    event = pick(
        st.fixed_dictionaries(
            {"type": name},
            optional={
                "data": optional_object,
                "metadata": optional_object,
                "schemaVersion": schema_version,
                "tags": tags,
                "unknown": json_values,
            },
        ),
        json_values,
    )
    events = pick(st.lists(event, min_size=1, max_size=3), st.just([]) | json_values)
    options = st.fixed_dictionaries(
        {}, optional={"expectedStreamVersion": version, "idempotencyKey": key}
    )
    append = pick(
        st.fixed_dictionaries(
            {"events": events},
            optional={
                "options": pick(options | st.none(), json_values),
                "expectedStreamVersion": version,
                "other": json_values,
            },
        ),
        json_values,
    )
    part = st.fixed_dictionaries(
        {"streamId": name, "events": events}, optional={"expectedStreamVersion": version}
    )
    streams = pick(
        st.fixed_dictionaries(
            {
                "streams": pick(
                    st.lists(part, min_size=1, max_size=3),
                    st.lists(st.just(SMALL_PART), min_size=101, max_size=101)
                    | st.just([])
                    | json_values,
                )
            },
            optional={"idempotencyKey": key},
        ),
        json_values,
    )
    names = pick(st.lists(name, min_size=1, max_size=2), json_values)
    item = st.fixed_dictionaries({}, optional={"types": names, "tags": names})
    items = pick(st.lists(item, min_size=1, max_size=2), st.just([]) | json_values)
    condition = pick(
        st.fixed_dictionaries(
            {"failIfEventsMatch": st.fixed_dictionaries({"items": items})},
            optional={"after": pick(st.integers(0, 2**53), st.just(2**53 + 1) | json_values)},
        )
        | st.none(),
        json_values,
    )
    dcb = pick(
        st.fixed_dictionaries({"events": events}, optional={"condition": condition}),
        json_values,
    )
    return append, streams, dcb


def refusal(exc: ApiError) -> tuple[Any, ...]:
    return ("refused", exc.code, exc.message, exc.details)


GOOD = strategies(lambda good, bad: good)
ANY = strategies(lambda good, bad: good | bad)
append_bodies = ANY[0]

CASES: list[tuple[str, Any, type[BaseModel], Any, Any]] = [
    ("append", GOOD[0] | ANY[0], AppendBody, fast_append, AppendRequest.of),
    ("streams", GOOD[1] | ANY[1], StreamsAppendBody, fast_streams, StreamsRequest.of),
    ("dcb", GOOD[2] | ANY[2], DcbAppendBody, fast_dcb, DcbRequest.of),
]


@pytest.mark.parametrize(
    ("strategy", "model", "fast", "of"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_fast_reading_is_the_models_or_steps_aside(
    strategy: Any, model: type[BaseModel], fast: Any, of: Any
) -> None:
    seen = {"fast": 0, "aside": 0}

    @settings(max_examples=300, deadline=None, database=None)
    @given(value=strategy)
    def check(value: Any) -> None:
        value = json.loads(json.dumps(value))  # as a decoded request body holds it
        try:
            expected = of(model.model_validate(value))
        except ValidationError:
            expected = None
        except ApiError as exc:  # (valid fields that contradict each other)
            expected = refusal(exc)
        try:
            got = fast(value)
        except ApiError as exc:
            got = refusal(exc)
        seen["fast" if got is not None else "aside"] += 1
        if got is not None:
            assert expected is not None, (
                f"the fast reading accepted what the model refuses: {value!r}"
            )
            assert got == expected

    check()
    # Both ways were taken, the fast one often enough for the comparison to mean something.
    assert seen["fast"] >= 30 and seen["aside"] >= 30, seen


@pytest.mark.parametrize(
    ("strategy", "fast"),
    [(GOOD[0], fast_append), (GOOD[1], fast_streams), (GOOD[2], fast_dcb)],
    ids=["append", "streams", "dcb"],
)
def test_well_formed_bodies_take_the_fast_reading(strategy: Any, fast: Any) -> None:
    @settings(max_examples=100, deadline=None, database=None)
    @given(value=strategy)
    def check(value: Any) -> None:
        try:
            assert fast(json.loads(json.dumps(value))) is not None, value
        except ApiError as exc:  # (refused by the fast reading itself, as the model's way would)
            assert exc.code == "VALIDATION_ERROR", value

    check()


def test_the_common_bodies_take_the_fast_reading() -> None:
    event = {"type": "order.placed", "data": {"orderId": "o-1"}, "metadata": {"by": "me"}}
    tagged = {
        "type": "UserRegistered",
        "data": None,
        "tags": ["u:a", "u:a"],
        "schemaVersion": "1.0.0",
    }
    assert fast_append({"events": [event, tagged], "options": {"expectedStreamVersion": 3}}) == (
        AppendRequest.of(
            AppendBody.model_validate({"events": [event, tagged], "expectedStreamVersion": 3})
        )
    )
    assert fast_streams({"streams": [{"streamId": "s", "events": [event]}], "idempotencyKey": "k"})
    condition = {"failIfEventsMatch": {"items": [{"types": ["UserRegistered"]}]}, "after": 4}
    dcb = fast_dcb({"events": [tagged], "condition": condition})
    assert dcb is not None and dcb.condition is not None and dcb.condition.after == 4
    assert dcb.events[0].tags == ("u:a",)  # duplicate tags once, as the model reads them


# -- over HTTP: bad bodies answered exactly as on the model's path ---------------------------

EVENT = b'{"type":"a"}'


def one(*events: bytes, rest: bytes = b"") -> bytes:
    """An append body of these events (JSON text), and ``rest`` (more top-level fields)."""
    return b'{"events":[' + b",".join(events) + b"]" + rest + b"}"


def part(stream_id: bytes, rest: bytes = b"") -> bytes:
    return b'{"streams":[{"streamId":' + stream_id + b',"events":[' + EVENT + b"]}]" + rest + b"}"


def condition(value: bytes) -> bytes:
    return one(EVENT, rest=b',"condition":' + value)


MANY_TAGS = json.dumps({"type": "a", "tags": [f"t{i}" for i in range(65)]}).encode()
MANY_STREAMS = json.dumps({"streams": [{"streamId": "a", "events": [{"type": "a"}]}] * 101})
ITEMS = b'{"failIfEventsMatch":{"items":'

BAD: list[tuple[str, str, bytes]] = [
    ("duplicate-key-last-wins", "streams/s-1", one(EVENT, rest=b',"events":[]')),
    ("duplicate-type-key", "streams/s-1", one(b'{"type":"a","type":5}')),
    (
        "version-past-64-bits",
        "streams/s-1",
        one(EVENT, rest=b',"expectedStreamVersion":1' + b"0" * 20),
    ),
    (
        "version-negative-in-options",
        "streams/s-1",
        one(EVENT, rest=b',"options":{"expectedStreamVersion":-1}'),
    ),
    ("schema-too-big", "streams/s-1", one(b'{"type":"a","schemaVersion":9007199254740992}')),
    ("schema-too-small", "streams/s-1", one(b'{"type":"a","schemaVersion":-9007199254740992}')),
    ("schema-bool", "streams/s-1", one(b'{"type":"a","schemaVersion":true}')),
    ("schema-null", "streams/s-1", one(b'{"type":"a","schemaVersion":null}')),
    ("schema-65-chars", "streams/s-1", one(b'{"type":"a","schemaVersion":"' + b"1" * 65 + b'"}')),
    ("type-missing", "streams/s-1", one(b'{"data":{}}')),
    ("type-257-chars", "streams/s-1", one(b'{"type":"' + b"t" * 257 + b'"}')),
    ("type-control", "streams/s-1", one(b'{"type":"a\\u0001"}')),
    ("type-c1-control", "streams/s-1", one(b'{"type":"a\\u0085b"}')),
    ("stream-c1-control", "streams/a%C2%85b", one(EVENT)),
    ("stream-not-utf-8", "streams/%FF%FE", one(EVENT)),
    ("data-array", "streams/s-1", one(b'{"type":"a","data":[1]}')),
    ("data-string", "streams/s-1", one(b'{"type":"a","data":"x"}')),
    ("metadata-number", "streams/s-1", one(b'{"type":"a","metadata":1}')),
    ("events-empty", "streams/s-1", one()),
    ("events-missing", "streams/s-1", b'{"options":{}}'),
    ("second-event-bad", "streams/s-1", one(EVENT, b'{"type":""}')),
    ("tags-65", "streams/s-1", one(MANY_TAGS)),
    ("tag-number", "streams/s-1", one(b'{"type":"a","tags":[1]}')),
    ("tag-comma", "streams/s-1", one(b'{"type":"a","tags":["a,b"]}')),
    ("key-empty", "streams/s-1", one(EVENT, rest=b',"options":{"idempotencyKey":""}')),
    ("body-array", "streams/s-1", b"[]"),
    ("streams-empty", "streams", b'{"streams":[]}'),
    ("streams-101", "streams", MANY_STREAMS.encode()),
    ("streams-part-no-events", "streams", b'{"streams":[{"streamId":"a","events":[]}]}'),
    ("streams-id-number", "streams", part(b"5")),
    ("streams-id-reserved", "streams", part(b'"__dcb__"')),
    ("streams-id-control", "streams", part(b'"a\\u0001"')),
    ("streams-key-number", "streams", part(b'"a"', b',"idempotencyKey":5')),
    ("dcb-events-empty", "events", one()),
    ("dcb-condition-extra", "events", condition(ITEMS + b'[{"types":["a"]}]},"bogus":1}')),
    ("dcb-condition-and-event-bad", "events", b'{"events":[{"type":5}],"condition":{"after":-1}}'),
    ("dcb-items-empty", "events", condition(ITEMS + b"[]}}")),
    ("dcb-item-empty", "events", condition(ITEMS + b"[{}]}}")),
    ("dcb-condition-null-match", "events", condition(b'{"failIfEventsMatch":null}')),
]


def post(client: TestClient, path: str, raw: bytes) -> Any:
    headers = {"content-type": "application/json"}
    return client.post(f"/event-stores/orders/{path}", content=raw, headers=headers)


@pytest.mark.parametrize(("path", "raw"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_bodies_answer_as_on_the_models_path(
    client: TestClient, store: str, monkeypatch: pytest.MonkeyPatch, path: str, raw: bytes
) -> None:
    new = post(client, path, raw)
    assert_error(new, 400, "VALIDATION_ERROR")
    with monkeypatch.context() as patch:
        for name in ("fast_append", "fast_streams", "fast_dcb"):
            patch.setattr(bodies, name, lambda value: None)
        old = post(client, path, raw)
    assert (new.status_code, new.headers["content-type"], new.content) == (
        old.status_code,
        old.headers["content-type"],
        old.content,
    )
    assert head(client, store) == 0


# The exact answers of the edge cases (what the model says; the test above holds both paths to it).
EXACT: list[tuple[str, bytes, str, list[dict[str, str]]]] = [
    (
        "streams/s-1",
        b'{"events":[{"type":"a"}],"events":[]}',
        "events: List should have at least 1 item after validation, not 0",
        [
            {
                "field": "events",
                "message": "List should have at least 1 item after validation, not 0",
            }
        ],
    ),
    (
        "streams/s-1",
        b'{"events":[{"type":"a","type":5}]}',
        "events.0.type: Input should be a valid string",
        [{"field": "events.0.type", "message": "Input should be a valid string"}],
    ),
    (
        "streams/s-1",
        one(EVENT, rest=b',"expectedStreamVersion":18446744073709551616'),
        # One entry per field, named as the client wrote it, with why each form did not fit.
        "expectedStreamVersion: Input should be a valid integer or "
        "Input should be 'any', 'no_stream' or 'stream_exists'",
        [
            {
                "field": "expectedStreamVersion",
                "message": "Input should be a valid integer or "
                "Input should be 'any', 'no_stream' or 'stream_exists'",
            },
        ],
    ),
    (
        "streams/s-1",
        b'{"events":[{"type":"a","schemaVersion":9007199254740992}]}',
        "events.0.schemaVersion: Input should be less than or equal to 9007199254740991 or "
        "Input should be a valid string",
        [
            {
                "field": "events.0.schemaVersion",
                "message": "Input should be less than or equal to 9007199254740991 or "
                "Input should be a valid string",
            },
        ],
    ),
    (
        "streams/s-1",
        b'{"events":[{"data":{}}]}',
        "events.0.type: Field required",
        [{"field": "events.0.type", "message": "Field required"}],
    ),
    (
        "streams/s-1",
        b'{"events":[{"type":"a","data":[1]}]}',
        "events.0.data: Input should be a valid dictionary",
        [{"field": "events.0.data", "message": "Input should be a valid dictionary"}],
    ),
    (
        "streams",
        b'{"streams":[{"streamId":"a","events":[]}]}',
        "streams.0.events: List should have at least 1 item after validation, not 0",
        [
            {
                "field": "streams.0.events",
                "message": "List should have at least 1 item after validation, not 0",
            }
        ],
    ),
    (
        "events",
        b'{"events":[{"type":5}],"condition":{"after":-1}}',
        "events.0.type: Input should be a valid string; "
        "condition.failIfEventsMatch: Field required; "
        "condition.after: Input should be greater than or equal to 0",
        [
            {"field": "events.0.type", "message": "Input should be a valid string"},
            {"field": "condition.failIfEventsMatch", "message": "Field required"},
            {"field": "condition.after", "message": "Input should be greater than or equal to 0"},
        ],
    ),
]


@pytest.mark.parametrize(("path", "raw", "message", "details"), EXACT)
def test_edge_cases_exact_answers(
    client: TestClient, store: str, path: str, raw: bytes, message: str, details: Any
) -> None:
    body = assert_error(post(client, path, raw), 400, "VALIDATION_ERROR")
    assert body == {"error": "VALIDATION_ERROR", "message": message, "details": details}
    assert head(client, store) == 0


def test_large_numbers_inside_data_are_kept(client: TestClient, store: str) -> None:
    raw = (
        b'{"events":[{"type":"a","data":{"big":18446744073709551615,"neg":-9223372036854775808}}]}'
    )
    response = post(client, "streams/s-1", raw)
    assert response.status_code == 201, response.text
    (event,) = response.json()["events"]
    assert event["data"] == {"big": 18446744073709551615, "neg": -9223372036854775808}


@pytest.mark.parametrize("version", [0, -1, 1_000_001, 2**53 - 1, "1.0.0", " 2 "])
def test_every_schema_version_json_keeps_exact_is_stored_as_written(
    client: TestClient, store: str, version: Any
) -> None:
    raw = json.dumps({"events": [{"type": "a", "schemaVersion": version}]}).encode()
    response = post(client, "streams/s-1", raw)
    assert response.status_code == 201, response.text
    (written,) = response.json()["events"]
    (read,) = client.get(f"/event-stores/{store}/streams/s-1").json()["events"]
    for event in (written, read):
        assert event["schemaVersion"] == version
        assert type(event["schemaVersion"]) is type(version)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=append_bodies)
def test_generated_bodies_answer_as_on_the_models_path(
    client: TestClient, store: str, value: Any
) -> None:
    raw = json.dumps(value).encode()
    new = post(client, "streams/s-1", raw)
    if new.status_code != 400:
        return  # appended (or refused later, by the broker): nothing to compare byte for byte
    saved = bodies.fast_append
    bodies.fast_append = lambda value: None  # type: ignore[assignment]
    try:
        old = post(client, "streams/s-1", raw)
    finally:
        bodies.fast_append = saved
    assert (new.status_code, new.content) == (old.status_code, old.content)
