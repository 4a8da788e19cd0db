"""Never a silent superset (contract section 7): a query parameter a route does not declare is a
400 VALIDATION_ERROR naming it, on every route of the reads and the store administration, and
what a route declares is exactly what its OpenAPI description lists."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute
from rest_support import PREFIXES, TestClient, assert_error, error_fields

from gateway.http import reads, stores, webhooks
from gateway.http.params import DECLARED_ONLY, declared

# (method, path below the prefix, body) of every route that refuses unknown parameters.
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("POST", "", {"name": "another"}),
    ("GET", "/{store}", None),
    ("GET", "/{store}/events", None),
    ("GET", "/{store}/streams", None),
    ("GET", "/{store}/stream-types/{stream_type}/streams", None),
    ("GET", "/{store}/streams/{stream_id}", None),
    ("GET", "/{store}/streams/{stream_id}/events", None),
    ("DELETE", "/{store}", None),  # last: the store is gone after it
]


def call(client: TestClient, method: str, url: str, body: Any, **params: Any) -> Any:
    if method == "DELETE":
        params["confirm"] = "true"
    url = url.format(store="orders", stream_id="order-1", stream_type="order")
    return client.request(method, url, params=params, json=body)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_an_unknown_parameter_is_refused_by_name(
    client: TestClient, store: str, method: str, path: str, body: Any
) -> None:
    for base in PREFIXES:
        for name in ("bogus", "StreamId", "limit ", "filter[type]"):
            response = call(client, method, base + path, body, **{name: "1"})
            result = assert_error(response, 400, "VALIDATION_ERROR")
            assert error_fields(result) == [name]
            assert repr(name) in result["message"] and "accepts" in result["message"]
    # Nothing was done: the store is still there, and no other was made.
    assert [s["name"] for s in client.get("/event-stores").json()["eventStores"]] == [store]


def test_several_unknown_parameters_are_all_named_once(client: TestClient, store: str) -> None:
    response = client.get(
        f"/event-stores/{store}/events?zeta=1&type=a&alpha=2&zeta=3&limit=0&apiKey=whatever"
    )
    result = assert_error(response, 400, "VALIDATION_ERROR")
    assert error_fields(result) == ["zeta", "alpha"]  # reported before the bad limit


def test_the_api_key_parameter_is_accepted_everywhere(client: TestClient, store: str) -> None:
    for method, path, body in ROUTES:
        response = call(client, method, "/event-stores" + path, body, apiKey="dg_x")
        assert response.status_code < 400, (method, path, response.text)
        if method == "POST":
            client.delete("/event-stores/another?confirm=true")


def test_the_openapi_description_lists_exactly_what_a_route_accepts(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    strict = [
        route
        for router in (stores.router, reads.router, webhooks.router)
        for route in router.routes
        if isinstance(route, APIRoute)
        and any(d.dependency is DECLARED_ONLY.dependency for d in route.dependencies)
    ]
    assert {(m, r.path) for r in strict for m in r.methods} >= {
        (m, "/event-stores" + p) for m, p, _ in ROUTES
    }
    for route in strict:
        for method in route.methods:
            operation = spec["paths"][route.path][method.lower()]
            listed = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            assert listed == declared(route) - {"apiKey"}, (method, route.path)
