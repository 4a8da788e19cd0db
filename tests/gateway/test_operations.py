"""Liveness, readiness, metrics and the OpenAPI description."""

from __future__ import annotations

from rest_support import TestClient, append


def test_healthz_and_readyz(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_openapi_lists_the_routes(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths["/event-stores"]) >= {"get", "post"}
    assert set(paths["/event-stores/{store}"]) >= {"get", "delete"}
    assert "post" in paths["/event-stores/{store}/streams/{stream_id}"]
    assert "get" in paths["/event-stores/{store}/streams/{stream_id}"]
    assert "post" in paths["/event-stores/{store}/streams/{stream_id}/events"]
    assert "get" in paths["/event-stores/{store}/events"]
    assert "get" in paths["/event-stores/{store}/streams"]
    for ops in ("/healthz", "/readyz", "/metrics"):
        assert "get" in paths[ops]
    # The append route documents the body it reads itself.
    append_op = paths["/event-stores/{store}/streams/{stream_id}"]["post"]
    schema = append_op["requestBody"]["content"]["application/json"]["schema"]
    assert "events" in schema["properties"]


def test_openapi_says_what_the_routes_answer(client: TestClient) -> None:
    """Errors in the contract's body for every 4xx and 503 (never FastAPI's 422, which no route
    answers), nested request models resolvable, links from created resources to their uses."""
    document = client.get("/openapi.json").json()
    text = client.get("/openapi.json").text
    assert "#/$defs/" not in text, "a nested model the document cannot resolve"
    schemas = document["components"]["schemas"]
    assert {"EventIn", "ErrorBody", "EventOut", "WebhookIn"} <= set(schemas)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert "422" not in statuses, (method, path)
            if path.startswith("/event-stores"):
                assert {"4XX", "503"} <= statuses, (method, path)
    appended = document["paths"]["/event-stores/{store}/streams/{stream_id}"]["post"]
    assert appended["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Appended"
    }
    created = document["paths"]["/event-stores"]["post"]["responses"]["201"]
    assert created["links"]["GetStore"]["parameters"] == {"store": "$response.body#/name"}
    tokens = document["paths"]["/event-stores/{store}/ws-tokens"]["post"]
    assert tokens["requestBody"]["required"] is False  # no body: a default token
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


def test_405_allows_every_method_of_the_path(client: TestClient, store: str) -> None:
    for path, methods in (
        (f"/event-stores/{store}", "DELETE, GET"),
        ("/event-stores", "GET, POST"),
        (f"/api/event-stores/{store}/subscriptions", "DELETE, GET"),
    ):
        response = client.request("PATCH", path)
        assert response.status_code == 405
        assert response.headers["allow"] == methods, path
        assert response.json()["error"] == "METHOD_NOT_ALLOWED"


def test_docs(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "openapi.json" in response.text


def test_metrics_count_appends(client: TestClient, store: str) -> None:
    append(client, store, "s-1", {"type": "t", "data": {}}, {"type": "t", "data": {}})
    response = client.get("/metrics")
    assert response.status_code == 200
    lines = [ln for ln in response.text.splitlines() if ln.startswith("deltagate_events_appended")]
    assert any(ln.split()[-1] in ("2.0", "2") for ln in lines), lines
