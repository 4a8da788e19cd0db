"""Filters on content, end to end on a real pod (contract section 7): DeltaBase's WebSocket
``?filter`` with ``data``/``metadata`` containment, the subscribe message's ``match`` and DCB
``query`` (live subscriptions by tag), a ``?filter`` that cannot be parsed, and a browser token's
content limits that no subscription can leave."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from tests.e2e.wsclient import Client
from tests.harness import Pod, spawn_pods

STORE = "content"


def append(
    pod: Pod, stream: str, events: list[dict[str, Any]], headers: dict[str, str] | None = None
) -> None:
    response = httpx.post(
        f"{pod.url}/event-stores/{STORE}/streams/{stream}",
        json={"events": events},
        headers=headers or {},
        timeout=10,
    )
    assert response.status_code == 201, response.text


def order(status: str, region: str = "eu", tags: list[str] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "order.updated",
        "data": {"status": status, "total": {"amount": 5, "currency": "EUR"}},
        "metadata": {"region": region},
    }
    if tags:
        event["tags"] = tags
    return event


async def connected(pod: Pod, query: str = "") -> Client:
    client = Client(pod.ws_url, STORE)
    await client.connect(query=query)
    return client


async def test_deltabase_filter_on_data_delivers_only_what_matches(
    pods: list[Pod], redis_url: str
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1)
    append(pod, "o-0", [order("pending")])  # creates the store
    flt = {"type": "order.updated", "data": {"status": "completed"}}
    client = await connected(pod, "?filter=" + quote(json.dumps(flt)))
    await client.wait(lambda: client.got.subscribed, what="subscribed at connect")
    for status in ("pending", "completed", "shipped", "completed"):
        append(pod, "o-1", [order(status)])
    await client.wait(lambda: len(client.got.events) == 2, what="the completed ones")
    assert [e["data"]["status"] for e in client.got.events] == ["completed", "completed"]
    assert client.got.positions == [3, 5]
    await client.disconnect()


async def test_match_and_query_on_subscribe_live_and_replayed(
    pods: list[Pod], redis_url: str
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1)
    append(pod, "o-1", [order("shipped", "eu", ["user:1"]), order("shipped", "us", ["user:2"])])
    client = await connected(pod)
    await client.send(
        action="subscribe",
        subscriptionId="eu-shipped",
        eventFilter="order.*",
        match={
            "data": {"status": "shipped", "total": {"currency": "EUR"}},
            "metadata": {"region": "eu"},
        },
        position="earliest",
    )
    await client.send(
        action="subscribe",
        subscriptionId="user-2",
        query={"items": [{"tags": ["user:2"]}]},
        position="earliest",
    )
    await client.wait(lambda: len(client.got.subscribed) == 2, what="two subscriptions")
    append(pod, "o-2", [order("shipped", "eu", ["user:2"]), order("pending", "eu", ["user:2"])])
    await client.wait(lambda: len(client.got.events) == 5, what="replayed and live matches")
    raw = client.got.events
    assert sorted(e["globalPosition"] for e in raw) == [1, 2, 3, 3, 4]
    await client.disconnect()


async def test_a_filter_that_cannot_be_parsed_is_reported_then_everything_flows(
    pods: list[Pod], redis_url: str
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1)
    append(pod, "o-0", [order("pending")])
    twice = "?filter=" + quote("{}") + "&filter=" + quote(json.dumps({"type": "order.*"}))
    # (empty: cannot be parsed; given twice: which one was meant is not known, neither is taken)
    for query in ("?filter=" + quote("{not json"), "?filter=", twice):
        client = await connected(pod, query)
        await client.wait(
            lambda c=client: c.got.errors and c.got.subscribed, what="error, then all"
        )
        assert client.got.errors[0]["error"] == "VALIDATION_ERROR"
        head = int(
            httpx.get(f"{pod.url}/event-stores/{STORE}").json()["statistics"]["headPosition"]
        )
        append(pod, "x-1", [{"type": "anything.else", "data": {}}])
        await client.wait(lambda c=client, h=head: c.got.positions == [h + 1], what="all events")
        await client.disconnect()


async def test_an_unknown_query_parameter_is_reported_not_ignored(
    pods: list[Pod], redis_url: str
) -> None:
    """Never a silent superset: a misspelt ``filter`` once subscribed nothing without a word.
    It is reported as any bad message is, and the connection stays open."""
    (pod,) = spawn_pods(pods, redis_url, 1)
    append(pod, "o-0", [order("pending")])
    flt = quote(json.dumps({"type": "order.*"}))
    client = await connected(pod, f"?filtr={flt}&eventFilter=x")
    await client.wait(lambda: client.got.errors, what="the error")
    (error,) = client.got.errors
    assert error["error"] == "VALIDATION_ERROR"
    assert "'filtr'" in error["message"] and "'eventFilter'" in error["message"]
    await client.subscribe("order.*")
    append(pod, "o-1", [order("shipped")])
    await client.wait(lambda: client.got.positions == [2], what="the open connection's events")
    await client.disconnect()


async def test_a_token_content_limit_holds_for_every_subscription(
    pods: list[Pod], redis_url: str
) -> None:
    admin = {"X-API-Key": "admin-key-for-content-tests"}
    (pod,) = spawn_pods(
        pods,
        redis_url,
        1,
        DELTAGATE_AUTH="enabled",
        DELTAGATE_ADMIN_KEY=admin["X-API-Key"],
        DELTAGATE_TOKEN_SECRET="x" * 32,
    )
    append(pod, "o-0", [order("pending", "eu")], admin)
    minted = httpx.post(
        f"{pod.url}/event-stores/{STORE}/ws-tokens",
        headers=admin,
        json={
            "match": {"metadata": {"region": "eu"}},
            "query": {"items": [{"types": ["order.updated"]}]},
        },
    )
    assert minted.status_code == 201, minted.text
    client = await connected(pod, "?token=" + minted.json()["token"])
    await client.subscribe("*", "earliest")  # asks for everything
    append(pod, "o-1", [order("shipped", "us"), order("shipped", "eu")], admin)
    append(pod, "x-1", [{"type": "other.thing", "data": {}, "metadata": {"region": "eu"}}], admin)
    append(pod, "o-2", [order("delivered", "eu")], admin)
    await client.wait(lambda: len(client.got.events) == 3, what="the token's share")
    assert client.got.positions == [1, 3, 5]
    await client.disconnect()


async def test_a_match_nested_too_deep_is_refused_everywhere_not_a_500(
    pods: list[Pod], redis_url: str
) -> None:
    """A ``match`` nested hundreds of levels overflowed Python's recursion where it is walked
    (its size check, a webhook's fingerprint): 500 over HTTP, close 1011 on a WebSocket. It is
    refused where it is read, as any bad filter is: 400, or an error message on an open socket."""
    from broker.filters import MAX_MATCH_DEPTH

    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    append(pod, "o-0", [order("pending")])
    client = await connected(pod)
    json_body = {"content-type": "application/json"}
    for depth in (MAX_MATCH_DEPTH, 300, 1000):  # levels inside "data" (the match is one more)
        match = '{"data":' + '{"a":' * depth + "1" + "}" * depth + "}"
        hook = (
            '{"eventFilter":"*","subscriber":{"type":"webhook","config":'
            '{"url":"http://127.0.0.1:9/hook"}},"match":' + match + "}"
        )
        answers = [
            httpx.post(
                f"{pod.url}/event-stores/{STORE}/ws-tokens",
                content='{"match":' + match + "}",
                headers=json_body,
            ),
            httpx.post(
                f"{pod.url}/event-stores/{STORE}/subscribe", content=hook, headers=json_body
            ),
            httpx.get(f"{pod.url}/event-stores/{STORE}/events/sse?match={quote(match)}&position=x"),
        ]
        for answer in answers:
            assert answer.status_code == 400, (depth, answer.request.url, answer.text[:300])
            body = answer.json()
            # (a webhook's answers DeltaBase's code for a bad subscription)
            assert body["error"] in ("VALIDATION_ERROR", "INVALID_SUBSCRIPTION_CONFIG"), body
            assert f"deeper than {MAX_MATCH_DEPTH}" in json.dumps(body), body
        subscribe = '{"action":"subscribe","subscriptionId":"deep","eventFilter":"*","match":'
        await client.ws.send(subscribe + match + "}")
        await client.wait(lambda d=depth: len(client.got.errors) >= 1, what="the error")
        error = client.got.errors.pop()
        assert error["error"] == "VALIDATION_ERROR", error
        assert f"deeper than {MAX_MATCH_DEPTH}" in error["message"], error
    await client.subscribe("order.*")
    append(pod, "o-1", [order("shipped")])
    await client.wait(lambda: client.got.positions == [2], what="the open connection's events")
    await client.disconnect()


async def test_a_subscription_past_the_pods_complex_patterns_gets_limit_exceeded(
    pods: list[Pod], redis_url: str
) -> None:
    """A store's subscriptions on a pod hold at most ``MAX_COMPLEX_PATTERNS`` distinct complex
    patterns: over the WebSocket one more is an ``error`` LIMIT_EXCEEDED and the connection goes
    on; over SSE a 400 in the contract's format."""
    from broker.fanout import MAX_COMPLEX_PATTERNS

    (pod,) = spawn_pods(pods, redis_url, 1)
    append(pod, "o-0", [order("pending")])
    client = await connected(pod)
    for k in range(MAX_COMPLEX_PATTERNS // 32):
        await client.subscribe([f"t{k}.{j}.*.x*" for j in range(32)])
    await client.wait(lambda: len(client.got.subscribed) == MAX_COMPLEX_PATTERNS // 32)
    await client.send(action="subscribe", subscriptionId="over", eventFilter="one.*.more*")
    await client.wait(lambda: client.got.errors, what="the error")
    (error,) = client.got.errors
    assert error["error"] == "LIMIT_EXCEEDED" and error["subscriptionId"] == "over", error
    answer = httpx.get(
        f"{pod.url}/event-stores/{STORE}/events/sse?eventFilter={quote('one.*.more*')}"
    )
    assert answer.status_code == 400 and answer.json()["error"] == "LIMIT_EXCEEDED", answer.text
    await client.subscribe("order.*")  # not complex: still fine
    append(pod, "o-1", [order("shipped")])
    await client.wait(lambda: 2 in client.got.positions, what="the open connection's events")
    await client.disconnect()
