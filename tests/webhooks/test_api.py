"""The subscriptions REST API in-process (TestClient runs the app's lifespan) on the private
redis-server: both body forms, the duplicate rule, list/get/delete, pause/resume, dead-letter
routes, and the refusals."""

from __future__ import annotations

import time
from typing import Any

import pytest

from broker.webhooks import secret_key
from gateway.app import create_app
from gateway.settings import Settings
from tests.webhooks.conftest import STORE
from tests.webhooks.support import TestClient

PREFIXES = ["/event-stores", "/api/event-stores"]
URL = "https://projections.example.com/api/projections/orders/events"


def sdk_form(url: str = URL, **config: Any) -> dict[str, Any]:
    return {
        "eventFilter": "order.*",
        "subscriberId": "orders-service",
        "subscriber": {"type": "webhook", "config": {"url": url, **config}},
    }


def config_form(**webhook: Any) -> dict[str, Any]:
    return {
        "id": "orders-projection",
        "eventFilter": ["order.placed", "order.shipped", "order.delivered"],
        "subscriberType": "webhook",
        "webhook": {"url": URL, **webhook},
    }


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"] == code, body
    assert set(body) <= {"error", "message", "details"} and body["message"]
    return dict(body)


@pytest.mark.parametrize("base", PREFIXES)
def test_create_with_either_form_and_the_duplicate_rule(
    api: TestClient, store: str, base: str
) -> None:
    first = api.post(
        f"{base}/{store}/subscribe",
        json=sdk_form(
            headers={"Authorization": "Bearer t0ken"},
            timeout=5000,
            retryPolicy={"maxAttempts": 5, "backoffMinutes": 1},
        ),
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["isExistingSubscription"] is False
    assert body["eventStoreName"] == store and body["eventFilter"] == "order.*"
    assert body["subscriberType"] == "webhook" and body["subscriberId"] == "orders-service"
    assert body["status"] == "active" and body["lastProcessedEventGlobalPosition"] == 0
    config = body["subscriber"]["config"]
    assert config["url"] == URL and config["timeout"] == 5000, "milliseconds, as DeltaBase"
    assert config["retryPolicy"] == {"maxAttempts": 5, "backoffMinutes": 1}, "as written"
    assert config["headers"] == {"Authorization": "[redacted]"}, "header values are write-only"
    assert body["signingSecret"].startswith("whsec_")
    assert len(secret_key(body["signingSecret"])) == 32

    # Same filter, URL, headers (header name case aside) and timeout: that one, without its
    # secret.
    again = sdk_form(headers={"authorization": "Bearer t0ken"}, timeout=5000)
    second = api.post(f"{base}/{store}/subscribe", json=again)
    assert second.status_code == 200, second.text
    assert second.json()["isExistingSubscription"] is True
    assert "already" in second.json()["message"]
    assert second.json()["subscriptionId"] == body["subscriptionId"]
    assert "signingSecret" not in second.json()

    # Other headers: another subscription. The seed's config form works too.
    third = api.post(f"{base}/{store}/subscribe", json=config_form())
    assert third.status_code == 201, third.text
    assert third.json()["subscriptionId"] == "orders-projection"
    assert third.json()["eventFilter"] == ["order.placed", "order.shipped", "order.delivered"]
    same = api.post(f"{base}/{store}/subscribe", json=config_form()).json()
    assert same["isExistingSubscription"] is True and "signingSecret" not in same

    # The id is taken by another config.
    taken = config_form()
    taken["eventFilter"] = ["order.cancelled"]
    error(api.post(f"{base}/{store}/subscribe", json=taken), 400, "INVALID_SUBSCRIPTION_CONFIG")
    # A list of one pattern is answered (and kept) as a list, as it was given.
    one = config_form()
    one["id"], one["eventFilter"] = "one-pattern", ["order.refunded"]
    made = api.post(f"{base}/{store}/subscribe", json=one)
    assert made.status_code == 201 and made.json()["eventFilter"] == ["order.refunded"]
    got = api.get(f"{base}/{store}/subscriptions/one-pattern").json()
    assert got["eventFilter"] == ["order.refunded"]
    api.delete(f"{base}/{store}/subscriptions/one-pattern").raise_for_status()

    listing = api.get(f"{base}/{store}/subscriptions").json()
    assert listing["totalCount"] == 2
    assert [s["subscriptionId"] for s in listing["subscriptions"]] == [
        body["subscriptionId"],
        "orders-projection",
    ]
    for sub in listing["subscriptions"]:
        assert "signingSecret" not in sub and "secret" not in sub


def test_start_position_and_lag(api: TestClient, store: str) -> None:
    for i in range(5):
        api.post(
            f"/event-stores/{store}/streams/s-{i}", json={"events": [{"type": "a", "data": {}}]}
        )
    latest = api.post(f"/event-stores/{store}/subscribe", json=sdk_form()).json()
    earliest = api.post(
        f"/event-stores/{store}/subscribe", json={**sdk_form(URL + "?e"), "position": "earliest"}
    ).json()
    numbered = api.post(
        f"/event-stores/{store}/subscribe", json={**sdk_form(URL + "?n"), "position": 3}
    ).json()
    assert (latest["lastProcessedEventGlobalPosition"], latest["lag"]) == (5, 0)
    assert (earliest["lastProcessedEventGlobalPosition"], earliest["lag"]) == (0, 5)
    assert (numbered["lastProcessedEventGlobalPosition"], numbered["lag"]) == (3, 2)
    got = api.get(f"/event-stores/{store}/subscriptions/{earliest['subscriptionId']}").json()
    assert got["lag"] == 5 and got["deadLetterCount"] == 0 and got["lastError"] is None


def test_declared_signing_secret(api: TestClient, store: str) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    made = api.post(f"/event-stores/{store}/subscribe", json=config_form(signingSecret=secret))
    assert made.json()["signingSecret"] == secret
    bad = api.post(
        f"/event-stores/{store}/subscribe", json=config_form(signingSecret="whsec_c2hvcnQ=")
    )
    body = error(bad, 400, "INVALID_SUBSCRIPTION_CONFIG")
    assert body["details"][0]["field"] == "signingSecret"


def test_get_delete_and_not_found(api: TestClient, store: str) -> None:
    sub_id = api.post(f"/event-stores/{store}/subscribe", json=sdk_form()).json()["subscriptionId"]
    path = f"/event-stores/{store}/subscriptions/{sub_id}"
    assert api.get(path).json()["subscriptionId"] == sub_id
    deleted = api.delete(path)
    assert deleted.status_code == 200 and deleted.json()["success"] is True
    error(api.get(path), 404, "SUBSCRIPTION_NOT_FOUND")
    error(api.delete(path), 404, "SUBSCRIPTION_NOT_FOUND")
    error(api.post(f"{path}/pause"), 404, "SUBSCRIPTION_NOT_FOUND")
    error(api.get(f"{path}/dead-letters"), 404, "SUBSCRIPTION_NOT_FOUND")
    for method, missing in [
        ("post", "/event-stores/nope/subscribe"),
        ("get", "/event-stores/nope/subscriptions"),
        ("get", f"/event-stores/nope/subscriptions/{sub_id}"),
        ("delete", f"/event-stores/nope/subscriptions/{sub_id}"),
        ("post", f"/event-stores/nope/subscriptions/{sub_id}/resume"),
        ("get", f"/event-stores/NOT-A-NAME/subscriptions/{sub_id}/dead-letters"),
    ]:
        kwargs = {"json": sdk_form()} if method == "post" else {}
        error(getattr(api, method)(missing, **kwargs), 404, "EVENT_STORE_NOT_FOUND")
    # Deleting them all needs a confirmation.
    api.post(f"/event-stores/{store}/subscribe", json=sdk_form())
    error(api.delete(f"/event-stores/{store}/subscriptions"), 400, "CONFIRMATION_REQUIRED")
    for value in ("yes", "1", "on"):
        refused = api.delete(f"/event-stores/{store}/subscriptions?confirm={value}")
        error(refused, 400, "CONFIRMATION_REQUIRED")
    everything = api.delete(f"/event-stores/{store}/subscriptions?confirm=true").json()
    assert everything["deleted"] == 1
    assert api.get(f"/event-stores/{store}/subscriptions").json()["totalCount"] == 0


def test_pause_resume_and_dead_letter_routes(api: TestClient, store: str) -> None:
    sub_id = api.post(f"/event-stores/{store}/subscribe", json=sdk_form()).json()["subscriptionId"]
    path = f"/event-stores/{store}/subscriptions/{sub_id}"
    created = api.get(path).json()["updatedAt"]
    time.sleep(0.002)  # (the stamps have milliseconds)
    paused = api.post(f"{path}/pause", json={"reason": "deploying the projection"}).json()
    assert paused["status"] == "paused" and paused["statusReason"] == "deploying the projection"
    assert paused["updatedAt"] > created  # a change of status is an update
    assert api.post(f"{path}/pause").json()["statusReason"] == "paused through the API"
    error(api.post(f"{path}/pause", json={"why": "x"}), 400, "VALIDATION_ERROR")
    for bad in ("yesterday", -1, True, {"time": "not a time"}):  # answered as a create would
        refused = error(api.post(f"{path}/resume", json={"position": bad}), 400, "VALIDATION_ERROR")
        assert [d["field"] for d in refused["details"]] == ["position"], bad
    time.sleep(0.002)
    resumed = api.post(f"{path}/resume").json()
    assert resumed["status"] == "active" and resumed["statusReason"] is None
    assert resumed["updatedAt"] > paused["updatedAt"]
    assert api.get(f"{path}/dead-letters").json() == {"deadLetters": [], "totalCount": 0}
    assert api.post(f"{path}/dead-letters/redrive").json() == {"success": True, "redriven": 0}
    error(api.post(f"{path}/dead-letters/nope/redrive"), 404, "NOT_FOUND")


INVALID = "INVALID_SUBSCRIPTION_CONFIG"
BAD: list[tuple[str, Any, str]] = [
    ("not an object", ["x"], "VALIDATION_ERROR"),
    ("unknown field", {**sdk_form(), "colour": "red"}, "VALIDATION_ERROR"),
    (
        "unknown config field",
        sdk_form(retries=3),
        "VALIDATION_ERROR",
    ),
    ("unknown seed field", {**config_form(), "subscriber": None}, "VALIDATION_ERROR"),
    (
        "no url",
        {"eventFilter": "*", "subscriber": {"type": "webhook", "config": {}}},
        "VALIDATION_ERROR",
    ),
    ("url not a string", sdk_form(url=42), "VALIDATION_ERROR"),
    ("ftp url", sdk_form(url="ftp://example.com/x"), "INVALID_SUBSCRIPTION_CONFIG"),
    ("no host", sdk_form(url="http:///path"), "INVALID_SUBSCRIPTION_CONFIG"),
    ("not a url", sdk_form(url="example.com/hook"), "INVALID_SUBSCRIPTION_CONFIG"),
    ("bad port", sdk_form(url="http://example.com:99999/"), "INVALID_SUBSCRIPTION_CONFIG"),
    ("space in url", sdk_form(url="http://exa mple.com/"), "INVALID_SUBSCRIPTION_CONFIG"),
    ("empty pattern", {**sdk_form(), "eventFilter": ""}, "INVALID_SUBSCRIPTION_CONFIG"),
    ("no patterns", {**sdk_form(), "eventFilter": []}, "INVALID_SUBSCRIPTION_CONFIG"),
    ("control char", {**sdk_form(), "eventFilter": "a\nb"}, "INVALID_SUBSCRIPTION_CONFIG"),
    ("long pattern", {**sdk_form(), "eventFilter": "x" * 300}, "INVALID_SUBSCRIPTION_CONFIG"),
    ("many wildcards", {**sdk_form(), "eventFilter": "*a" * 17}, "INVALID_SUBSCRIPTION_CONFIG"),
    ("zero attempts", sdk_form(retryPolicy={"maxAttempts": 0}), "INVALID_SUBSCRIPTION_CONFIG"),
    ("many attempts", sdk_form(retryPolicy={"maxAttempts": 101}), "INVALID_SUBSCRIPTION_CONFIG"),
    ("float attempts", sdk_form(retryPolicy={"maxAttempts": 2.5}), "VALIDATION_ERROR"),
    (
        "negative backoff",
        sdk_form(retryPolicy={"backoffMinutes": -1}),
        "INVALID_SUBSCRIPTION_CONFIG",
    ),
    (
        "huge backoff",
        sdk_form(retryPolicy={"backoffMinutes": 10**9}),
        "INVALID_SUBSCRIPTION_CONFIG",
    ),
    ("zero backoff", sdk_form(retryPolicy={"backoffSeconds": 0}), "INVALID_SUBSCRIPTION_CONFIG"),
    (
        "both backoffs",
        sdk_form(retryPolicy={"backoffSeconds": 1, "backoffMinutes": 1}),
        "INVALID_SUBSCRIPTION_CONFIG",
    ),
    ("zero timeout", sdk_form(timeout=0), "INVALID_SUBSCRIPTION_CONFIG"),
    ("huge timeout", sdk_form(timeout=300_001), "INVALID_SUBSCRIPTION_CONFIG"),
    ("sub-ms timeout", sdk_form(timeout=0.5), "INVALID_SUBSCRIPTION_CONFIG"),
    (
        "signature header",
        sdk_form(headers={"Webhook-Signature": "x"}),
        "INVALID_SUBSCRIPTION_CONFIG",
    ),
    ("bad header name", sdk_form(headers={"a b": "x"}), "INVALID_SUBSCRIPTION_CONFIG"),
    ("header newline", sdk_form(headers={"X-A": "a\r\nb"}), "INVALID_SUBSCRIPTION_CONFIG"),
    ("header not text", sdk_form(headers={"X-A": 1}), "VALIDATION_ERROR"),
    (
        "not a webhook",
        {**sdk_form(), "subscriber": {"type": "queue", "config": {"url": URL}}},
        "INVALID_SUBSCRIPTION_CONFIG",
    ),
    ("seed type", {**config_form(), "subscriberType": "lambda"}, "INVALID_SUBSCRIPTION_CONFIG"),
    ("bad id", {**config_form(), "id": "a/b"}, "INVALID_SUBSCRIPTION_CONFIG"),
    ("bad position", {**sdk_form(), "position": -1}, "INVALID_SUBSCRIPTION_CONFIG"),
    ("word position", {**sdk_form(), "position": "oldest"}, "VALIDATION_ERROR"),
]


def test_bad_configs_are_refused(api: TestClient, store: str) -> None:
    # One app for all the cases (each is independent: nothing is ever created).
    for why, body, code in BAD:
        response = api.post(f"/event-stores/{store}/subscribe", json=body)
        assert response.status_code == 400, (why, response.text)
        found = response.json()
        assert found["error"] == code, (why, found)
        details = found["details"]
        assert isinstance(details, list) and details and all("field" in d for d in details), why
    assert api.get(f"/event-stores/{store}/subscriptions").json()["totalCount"] == 0


def test_malformed_json_and_empty_body(api: TestClient, store: str) -> None:
    path = f"/event-stores/{store}/subscribe"
    error(
        api.post(path, content=b"{nope", headers={"content-type": "application/json"}),
        400,
        "VALIDATION_ERROR",
    )
    error(api.post(path), 400, "VALIDATION_ERROR")


def test_every_route_needs_manage_subscriptions(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, auth="enabled", admin_key="admin-key-123456")
    with TestClient(create_app(settings)) as client:
        admin = {"X-API-Key": "admin-key-123456"}
        assert client.post("/event-stores", json={"name": STORE}, headers=admin).status_code == 201
        for method, path in [
            ("post", f"/event-stores/{STORE}/subscribe"),
            ("get", f"/event-stores/{STORE}/subscriptions"),
            ("get", f"/event-stores/{STORE}/subscriptions/x"),
            ("delete", f"/event-stores/{STORE}/subscriptions/x"),
            ("post", f"/event-stores/{STORE}/subscriptions/x/pause"),
            ("post", f"/event-stores/{STORE}/subscriptions/x/resume"),
            ("get", f"/event-stores/{STORE}/subscriptions/x/dead-letters"),
            ("post", f"/event-stores/{STORE}/subscriptions/x/dead-letters/redrive"),
            ("post", f"/event-stores/{STORE}/subscriptions/x/dead-letters/e/redrive"),
        ]:
            error(getattr(client, method)(path), 401, "UNAUTHORIZED")
        made = client.post(f"/event-stores/{STORE}/subscribe", json=sdk_form(), headers=admin)
        assert made.status_code == 201, made.text


def test_openapi_documents_the_routes(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert "post" in paths["/event-stores/{store}/subscribe"]
    assert {"get", "delete"} <= set(paths["/event-stores/{store}/subscriptions/{sub_id}"])
    assert "get" in paths["/event-stores/{store}/subscriptions/{sub_id}/dead-letters"]
    assert "post" in paths["/event-stores/{store}/subscriptions/{sub_id}/pause"]
