"""Hostile input, fuzzed with hypothesis against a real pod: WebSocket messages, REST bodies and
query strings. Never a 500, never a crashed pod, never a partial write."""

from __future__ import annotations

import json
import math
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from tests.harness import Pod, spawn_pods

STORE = "fuzz"
KNOWN_ERRORS = {"INVALID_MESSAGE", "VALIDATION_ERROR", "FORBIDDEN", "LIMIT_EXCEEDED"}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

names = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "{",
            "}",
            "*",
            "/",
            "..",
            "\x00",
            "a{b}c",
            "order.*",
            "",
            " ",
            "ü",
            "\ud800" if False else "\u2028",
            "x" * 300,
        ]
    ),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    names,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)),
    max_leaves=12,
)
positions = st.one_of(
    st.sampled_from(["latest", "earliest", "soon", "", "-1"]),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
ws_messages = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"action": st.sampled_from(["subscribe", "unsubscribe", "ping", "dance", ""])},
        optional={
            "eventFilter": st.one_of(names, st.lists(names, max_size=40), json_values),
            "streamId": st.one_of(names, json_values),
            "position": positions,
            "subscriptionId": st.one_of(names, json_values),
        },
    ),
)


@pytest.fixture(scope="module")
def pod(redis_server):
    started: list[Pod] = []
    (p,) = spawn_pods(started, redis_server.url, 1)
    yield p
    for q in started:
        q.stop()


def head(pod: Pod) -> int:
    r = httpx.get(f"{pod.url}/event-stores/{STORE}")
    return int(r.json()["statistics"]["headPosition"]) if r.status_code == 200 else 0


@FUZZ
@given(message=ws_messages)
def test_websocket_messages(pod, message):
    with connect(f"{pod.ws_url}/event-stores/{STORE}/events/ws", open_timeout=5) as ws:
        ws.send(json.dumps(message))
        ws.send(json.dumps({"action": "ping"}))
        replies = []
        while True:
            reply = json.loads(ws.recv(timeout=5))
            if reply["type"] == "pong":
                break
            replies.append(reply)
        for reply in replies:
            assert reply["type"] in (
                "error",
                "subscribed",
                "unsubscribed",
                "caughtUp",
                "checkpoint",
                "event",
            ), reply
            if reply["type"] == "error":
                assert reply["error"] in KNOWN_ERRORS, reply


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_websocket_raw_frames(pod, raw):
    with connect(f"{pod.ws_url}/event-stores/{STORE}/events/ws", open_timeout=5) as ws:
        ws.send(raw)
        ws.send(json.dumps({"action": "ping"}))
        while json.loads(ws.recv(timeout=5))["type"] != "pong":
            pass


@FUZZ
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "events": st.lists(
                    st.dictionaries(
                        st.sampled_from(["type", "data", "metadata", "schemaVersion"]), json_values
                    ),
                    max_size=3,
                )
            },
            optional={"options": json_values, "expectedStreamVersion": json_values},
        ),
    ),
    stream=names,
)
def test_append_bodies(pod, body, stream):
    before = head(pod)
    url = f"{pod.url}/event-stores/{STORE}/streams/{quote(stream, safe='') or 'x'}"
    r = httpx.post(url, content=json.dumps(body, allow_nan=False), timeout=10)
    assert r.status_code < 500, r.text
    if r.status_code != 201:
        assert r.headers["content-type"].startswith("application/json"), (r.status_code, r.text)
        assert set(r.json()) <= {"error", "message", "details"}
        assert head(pod) == before, "a refused append wrote something"
    else:
        assert head(pod) == before + r.json()["eventsWritten"]


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(
            [
                "streamId",
                "type",
                "fromPosition",
                "toPosition",
                "limit",
                "offset",
                "sortDirection",
                "includeCount",
                "direction",
                "from",
                "to",
            ]
        ),
        st.one_of(names, st.integers().map(str), st.floats().map(str)),
        max_size=5,
    )
)
def test_query_strings(pod, params):
    for path in (
        f"/event-stores/{STORE}/events",
        f"/event-stores/{STORE}/streams/s-1",
        f"/event-stores/{STORE}/streams",
    ):
        r = httpx.get(pod.url + path, params=params, timeout=10)
        assert r.status_code < 500, (path, params, r.text)


def test_pathological_bodies(pod):
    before = head(pod)
    deep = "[" * 10_000 + "]" * 10_000
    cases = [
        deep.encode(),
        b'{"events": [{"type": "a", "data": {"x": NaN}}]}',
        b'{"events": [{"type": "a", "data": {"x": Infinity}}]}',
        b"\xff\xfe\x00",
        b'{"events": [{"type": "' + b"a" * 5_000_000 + b'"}]}',
        json.dumps({"events": [{"type": "a", "data": {"n": 10**400}}]}).encode(),
    ]
    for raw in cases:
        r = httpx.post(f"{pod.url}/event-stores/{STORE}/streams/s", content=raw, timeout=20)
        assert r.status_code in (400, 413), (raw[:40], r.status_code, r.text[:200])
    assert head(pod) == before
    assert httpx.get(pod.url + "/readyz").status_code == 200
    assert not math.isnan(before)
