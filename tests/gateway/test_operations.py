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
