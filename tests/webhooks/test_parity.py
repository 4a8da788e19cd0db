"""DeltaBase's forms of a webhook subscription (contract section 7, issue 14): ``timeout`` in
milliseconds and ``timeoutMs``, ``initialPosition``, every form of ``retryPolicy`` mapped onto
one policy the dispatcher honours, the duplicate rule with the timeout, content filters
(``match``, ``query``) applied by the dispatcher, ``eventStoreId`` in subscriptions and
payloads, and the subscription list's filters and paging; no unknown query parameter accepted."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from broker.webhooks import RetryPolicy, retry_delay
from broker.webhooks.retry import STANDARD_SCHEDULE
from tests.harness import wait_for
from tests.webhooks.conftest import STORE
from tests.webhooks.support import DispatcherProcess, Receiver, Reply, TestClient

URL = "https://projections.example.com/hook"
Spawn = Callable[..., DispatcherProcess]
Make = Callable[..., Receiver]


def sdk(url: str = URL, config: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {
        "eventFilter": "order.*",
        **top,
        "subscriber": {"type": "webhook", "config": {"url": url, **(config or {})}},
    }


def post(api: TestClient, body: Any, **params: Any) -> Any:
    return api.post(f"/event-stores/{STORE}/subscribe", json=body, params=params)


def refused(response: Any, code: str = "INVALID_SUBSCRIPTION_CONFIG") -> dict[str, Any]:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == code, response.text
    return dict(response.json())


# -- bodies ---------------------------------------------------------------------------------


def test_deltabase_subscribe_example_timeout_is_milliseconds(api: TestClient, store: str) -> None:
    # As DeltaBase's SDK documents it.
    made = post(
        api,
        {
            "eventFilter": "user.*",
            "subscriberType": "webhook",
            "webhook": {"url": URL, "headers": {"Authorization": "Bearer x"}, "timeout": 30000},
            "id": "users",
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["subscriber"]["config"]["timeout"] == 30000
    iac = post(
        api,
        {
            "id": "iac",
            "eventFilter": ["order.placed"],
            "subscriberType": "webhook",
            "webhook": {"url": URL + "?iac", "timeoutMs": 1500},
            "initialPosition": "earliest",
        },
    )
    assert iac.status_code == 201, iac.text
    assert iac.json()["subscriber"]["config"]["timeout"] == 1500
    for bad in (0, 0.5, 300_001):
        refused(post(api, sdk(config={"timeout": bad})))
    body = refused(post(api, sdk(config={"timeout": 1000, "timeoutMs": 2000})))
    assert body["details"][0]["field"] == "subscriber.config.timeoutMs"
    assert post(api, sdk(config={"timeout": 1000, "timeoutMs": 1000})).status_code == 201


def test_initial_position_is_position(api: TestClient, store: str) -> None:
    for i in range(3):
        api.post(f"/event-stores/{store}/streams/s-{i}", json={"events": [{"type": "a"}]})
    earliest = post(api, sdk(initialPosition="earliest")).json()
    assert earliest["lastProcessedEventGlobalPosition"] == 0 and earliest["lag"] == 3
    numbered = post(api, sdk(URL + "?n", initialPosition=2)).json()
    assert numbered["lastProcessedEventGlobalPosition"] == 2
    refused(post(api, sdk(URL + "?x", position="latest", initialPosition="earliest")))
    refused(post(api, sdk(URL + "?y", initialPosition="oldest")), "VALIDATION_ERROR")


def test_every_retry_policy_form_maps_onto_one_policy(api: TestClient, store: str) -> None:
    forms = [
        (
            {
                "strategy": "exponential",
                "initialDelayMs": 1000,
                "maxDelayMs": 60000,
                "multiplier": 3,
                "jitterPercent": 10,
                "maxAttempts": 6,
            },
            {
                "maxAttempts": 6,
                "backoffSeconds": 1,
                "strategy": "exponential",
                "multiplier": 3,
                "maxDelayMs": 60000,
                "jitterPercent": 10,
            },
        ),
        ({"maxRetries": 3, "backoffMultiplier": 1.5}, {"maxAttempts": 4, "multiplier": 1.5}),
        (
            {"strategy": "fixed", "initialDelayMs": 250},
            {"strategy": "fixed", "backoffSeconds": 0.25},
        ),
        ({"maxAttempts": 5, "backoffMinutes": 1}, {"maxAttempts": 5, "backoffSeconds": 60}),
    ]
    for i, (given, policy) in enumerate(forms):
        made = post(api, sdk(f"{URL}?{i}", {"retryPolicy": given}))
        assert made.status_code == 201, (given, made.text)
        shown = made.json()["subscriber"]["config"]["retryPolicy"]
        assert shown == given, "shown as written: an app reads back the names it wrote"
        written, meant = RetryPolicy.from_wire(shown), RetryPolicy.from_wire(policy)
        assert replace(written, names=()) == replace(meant, names=()), given
    bad = [
        ({"strategy": "random"}, "VALIDATION_ERROR"),
        ({"jitterPercent": 150}, "INVALID_SUBSCRIPTION_CONFIG"),
        ({"multiplier": 0.5}, "INVALID_SUBSCRIPTION_CONFIG"),
        ({"maxRetries": 3, "maxAttempts": 3}, "INVALID_SUBSCRIPTION_CONFIG"),
        ({"maxRetries": 100}, "INVALID_SUBSCRIPTION_CONFIG"),
        ({"initialDelayMs": 1000, "backoffSeconds": 1}, "INVALID_SUBSCRIPTION_CONFIG"),
        ({"initialDelayMs": 5000, "maxDelayMs": 1000}, "INVALID_SUBSCRIPTION_CONFIG"),
        ({"multiplier": 2, "backoffMultiplier": 3}, "INVALID_SUBSCRIPTION_CONFIG"),
        ({"maxDelayMs": 0}, "INVALID_SUBSCRIPTION_CONFIG"),
        ({"retries": 3}, "VALIDATION_ERROR"),
    ]
    for given, code in bad:
        body = refused(post(api, sdk(URL + "?bad", {"retryPolicy": given})), code)
        assert all("retryPolicy" in d["field"] for d in body["details"]), body


def test_retry_delays() -> None:
    rng = random.Random(7)

    def ceilings(policy: RetryPolicy, n: int = 5) -> list[float]:
        # jitterPercent 0: the delays are the values themselves.
        fixed = RetryPolicy(**{**_fields(policy), "jitter_percent": 0.0})
        return [retry_delay(fixed, STANDARD_SCHEDULE, k, rng) for k in range(1, n + 1)]

    assert ceilings(RetryPolicy(backoff_seconds=1)) == [1, 2, 4, 8, 16]
    assert ceilings(RetryPolicy(backoff_seconds=1, multiplier=3)) == [1, 3, 9, 27, 81]
    assert ceilings(RetryPolicy(backoff_seconds=2, strategy="linear")) == [2, 4, 6, 8, 10]
    assert ceilings(RetryPolicy(backoff_seconds=2, strategy="fixed")) == [2, 2, 2, 2, 2]
    capped = RetryPolicy(backoff_seconds=1, max_delay_seconds=5)
    assert ceilings(capped) == [1, 2, 4, 5, 5]
    assert ceilings(RetryPolicy(strategy="fixed")) == [5.0] * 5, "schedule's first delay"
    assert ceilings(RetryPolicy()) == list(STANDARD_SCHEDULE[:5])
    # Jitter: within the percentage around the value; by default uniform in [0, value].
    spread = [
        retry_delay(RetryPolicy(2, 10, "fixed", None, None, 20), (), 1, rng) for _ in range(300)
    ]
    assert min(spread) >= 8 and max(spread) <= 12 and max(spread) - min(spread) > 2
    full = [retry_delay(RetryPolicy(backoff_seconds=10), (), 1, rng) for _ in range(300)]
    assert min(full) >= 0 and max(full) <= 10 and min(full) < 2 and max(full) > 8
    # The default stays what it was: rng.uniform(0, ceiling).
    a, b = random.Random(1), random.Random(1)
    assert retry_delay(RetryPolicy(backoff_seconds=3), (), 2, a) == b.uniform(0, 6)


def _fields(policy: RetryPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in policy.__slots__}


def test_the_duplicate_rule_compares_the_timeout(api: TestClient, store: str) -> None:
    first = post(api, sdk(config={"timeout": 1000}))
    assert first.status_code == 201
    same = post(api, sdk(config={"timeoutMs": 1000}))
    assert same.status_code == 200 and same.json()["isExistingSubscription"] is True
    assert same.json()["message"], "a duplicate answer carries a message"
    other = post(api, sdk(config={"timeout": 2000}))
    assert other.status_code == 201 and other.json()["isExistingSubscription"] is False
    without = post(api, sdk())
    assert without.status_code == 201, "no timeout is another subscription again"
    matching = post(api, sdk(match={"data": {"status": "completed"}}))
    assert matching.status_code == 201, "a content filter is part of the filter"


def test_content_filters_are_validated(api: TestClient, store: str) -> None:
    made = post(
        api,
        sdk(match={"data": {"status": "completed"}}, query={"items": [{"tags": ["vip"]}]}),
    ).json()
    assert made["match"] == {"data": {"status": "completed"}}
    assert made["query"] == {"items": [{"tags": ["vip"]}]}
    by_query = post(api, {"query": {"items": [{"types": ["order.placed"]}]}, **sdk(URL + "?q")})
    assert by_query.status_code == 201
    no_filter = sdk(URL + "?none")
    del no_filter["eventFilter"]
    refused(post(api, no_filter), "VALIDATION_ERROR")
    refused(post(api, sdk(match={"colour": "red"})))
    refused(post(api, sdk(match={"data": 3})))
    refused(post(api, sdk(query={"items": []})))
    refused(post(api, sdk(match=[1])), "VALIDATION_ERROR")


# -- the routes' query strings ------------------------------------------------------------------


def test_unknown_query_parameters_are_refused(api: TestClient, store: str) -> None:
    sub_id = post(api, sdk()).json()["subscriptionId"]
    base = f"/event-stores/{store}"
    for method, path in [
        ("post", f"{base}/subscribe"),
        ("get", f"{base}/subscriptions"),
        ("get", f"{base}/subscriptions/{sub_id}"),
        ("get", f"{base}/subscriptions/{sub_id}/dead-letters"),
        ("post", f"{base}/subscriptions/{sub_id}/pause"),
        ("delete", f"{base}/subscriptions/{sub_id}"),
    ]:
        response = getattr(api, method)(path, params={"colour": "red"})
        body = refused(response, "VALIDATION_ERROR")
        assert body["details"] == [{"field": "colour", "message": body["details"][0]["message"]}]
    assert api.get(f"{base}/subscriptions/{sub_id}").status_code == 200, "nothing changed"


def test_the_list_honours_its_filters_and_paging(api: TestClient, store: str) -> None:
    ids = [post(api, sdk(f"{URL}?{i}")).json()["subscriptionId"] for i in range(3)]
    ids.append(post(api, {**sdk(URL + "?u"), "eventFilter": ["user.*", "a.b"]}).json()["id"])
    base = f"/event-stores/{store}/subscriptions"

    def listed(**params: Any) -> tuple[list[str], int]:
        body = api.get(base, params=params).json()
        return [s["subscriptionId"] for s in body["subscriptions"]], body["totalCount"]

    assert listed() == (ids, 4)
    assert listed(subscriberType="webhook") == (ids, 4)
    assert listed(subscriberType="queue") == ([], 0)
    assert listed(eventFilter="order.*") == (ids[:3], 3)
    assert listed(eventFilter="a.b") == (ids[3:], 1)
    assert listed(limit=2) == (ids[:2], 4)
    assert listed(limit=2, offset=3) == (ids[3:], 4)
    assert listed(eventFilter="order.*", offset=1, limit=1) == (ids[1:2], 3)
    refused(api.get(base, params={"limit": 0}), "VALIDATION_ERROR")
    refused(api.get(base, params={"offset": -1}), "VALIDATION_ERROR")


def test_subscriptions_carry_the_store_id(api: TestClient, store: str) -> None:
    store_id = api.get(f"/event-stores/{store}").json()["eventStoreId"]
    made = post(api, sdk()).json()
    assert made["eventStoreId"] == store_id and store_id
    assert made["statusDetails"] is None
    paused = api.post(
        f"/event-stores/{store}/subscriptions/{made['id']}/pause", json={"reason": "deploying"}
    ).json()
    assert paused["statusDetails"] == {"message": "deploying"}  # an object, as DeltaBase's


# -- the dispatcher -------------------------------------------------------------------------------


def subscribe(api: TestClient, receiver: Receiver, body: dict[str, Any]) -> str:
    response = post(api, body)
    assert response.status_code == 201, response.text
    sub_id = str(response.json()["subscriptionId"])
    receiver.secrets[sub_id] = response.json()["signingSecret"]
    return sub_id


@pytest.mark.timeout(60)
def test_the_dispatcher_applies_content_filters_and_the_retry_policy(
    api: TestClient, store: str, receivers: Make, dispatchers: Spawn
) -> None:
    receiver = receivers(lambda _, attempt: Reply(200)).start()
    failing = receivers(lambda _, attempt: Reply(503)).start()
    flaky = receivers(lambda _, attempt: Reply(503 if attempt < 3 else 200)).start()
    completed = subscribe(
        api,
        receiver,
        sdk(receiver.url + "?completed", match={"data": {"status": "completed"}}),
    )
    vip = subscribe(
        api, receiver, {**sdk(receiver.url + "?vip"), "query": {"items": [{"tags": ["vip"]}]}}
    )
    del_filter = sdk(receiver.url + "?tagged-only", query={"items": [{"tags": ["vip"]}]})
    del del_filter["eventFilter"]
    tagged_only = subscribe(api, receiver, del_filter)
    retry_twice = subscribe(
        api,
        failing,
        sdk(
            failing.url,
            {"retryPolicy": {"maxRetries": 1, "strategy": "fixed", "initialDelayMs": 50}},
        ),
    )
    backoff = subscribe(
        api,
        flaky,
        sdk(
            flaky.url,
            {
                "retryPolicy": {
                    "maxAttempts": 5,
                    "strategy": "linear",
                    "initialDelayMs": 20,
                    "maxDelayMs": 100,
                    "jitterPercent": 0,
                }
            },
            match={"data": {"status": "completed"}},
        ),
    )
    statuses = ["pending", "completed", "shipped", "completed", "pending"]
    for i, status in enumerate(statuses):
        response = api.post(
            f"/event-stores/{store}/streams/order-{i}",
            json={"events": [{"type": "order.updated", "data": {"status": status, "i": i}}]},
        )
        assert response.status_code == 201, response.text
    dcb = api.post(
        f"/event-stores/{store}/events",
        json={
            "events": [
                {"type": "order.placed", "data": {"status": "new"}, "tags": ["vip"]},
                {"type": "user.seen", "data": {}, "tags": ["vip", "x"]},
                {"type": "order.placed", "data": {"status": "completed"}, "tags": ["plain"]},
            ]
        },
    )
    assert dcb.status_code in (200, 201), dcb.text
    head = 8
    dispatchers().wait_ready()

    def positions(sub_id: str) -> set[int]:
        return receiver.positions(sub_id)

    expected = {completed: {2, 4, 8}, vip: {6}, tagged_only: {6, 7}}
    for sub_id, wanted in expected.items():
        wait_for(lambda s=sub_id, w=wanted: positions(s) == w, timeout=20, what=f"{sub_id}")
    wait_for(lambda: len(flaky.positions(backoff)) == 3, timeout=20, what="retried to success")
    assert flaky.attempts and set(flaky.attempts.values()) == {3}, "3 attempts each, then 2xx"

    def progress(sub_id: str) -> int:
        got = api.get(f"/event-stores/{store}/subscriptions/{sub_id}").json()
        return int(got["lastProcessedEventGlobalPosition"])

    for sub_id in (completed, vip, tagged_only, backoff):
        wait_for(lambda s=sub_id: progress(s) == head, timeout=10, what="progress past the rest")
    # maxRetries 1: two attempts, then a dead letter.
    wait_for(lambda: progress(retry_twice) == head, timeout=20, what="dead letters")
    letters = api.get(f"/event-stores/{store}/subscriptions/{retry_twice}/dead-letters").json()
    assert letters["totalCount"] == 7 and {d["attempts"] for d in letters["deadLetters"]} == {2}
    assert set(failing.attempts.values()) == {2}
    # The payload names the store by id too.
    store_id = api.get(f"/event-stores/{store}").json()["eventStoreId"]
    assert {d.store_id for d in receiver.accepted} == {store_id}
    assert receiver.bad_signatures == 0


def test_config_files_take_the_infrastructure_as_code_names() -> None:
    from broker import TargetPolicy
    from gateway.config_file import plan

    document = {
        "eventStores": [
            {
                "name": STORE,
                "subscriptions": [
                    {
                        "id": "orders-projection",
                        "eventFilter": ["order.placed"],
                        "subscriberType": "webhook",
                        "webhook": {
                            "url": URL,
                            "timeoutMs": 1500,
                            "retryPolicy": {"strategy": "linear", "initialDelayMs": 500},
                        },
                        "initialPosition": "earliest",
                        "match": {"data": {"region": "eu"}},
                    }
                ],
            }
        ]
    }
    (store_plan,) = plan(document, "deltabase.config.json", targets=TargetPolicy())
    (sub,) = store_plan.subscriptions
    assert sub.position == "earliest" and sub.config.timeout == 1.5
    assert sub.config.retry == RetryPolicy(
        backoff_seconds=0.5, strategy="linear", names=("initialDelayMs",)
    )
    assert sub.config.content is not None and sub.config.content.data == {"region": "eu"}
