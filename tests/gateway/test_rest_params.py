"""Never a silent superset (contract section 7): a query parameter a route does not declare is a
400 VALIDATION_ERROR naming it, on every route of the reads and the store administration, and
what a route declares is exactly what its OpenAPI description lists."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute
from rest_support import PREFIXES, TestClient, assert_error, error_fields

from gateway.http import appends, reads, stores, webhooks, ws_tokens
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
    assert error_fields(result) == ["zeta", "alpha", "limit"]  # every bad field, unknown first


def test_a_one_value_parameter_given_twice_is_refused_a_list_one_is_not(
    client: TestClient, store: str
) -> None:
    """``limit=1&limit=3`` once kept the last value silently: each parameter that takes one
    value is refused when repeated; ``type`` (a list) is repeated to give several."""
    for url, repeated in (
        (f"/event-stores/{store}/events?limit=1&limit=3", ["limit"]),
        (f"/event-stores/{store}/streams/o-1?direction=forward&direction=backward", ["direction"]),
        (f"/event-stores/{store}/subscriptions?eventFilter=a.*&eventFilter=b.*", ["eventFilter"]),
        (f"/event-stores/{store}/events?offset=0&limit=1&offset=1&limit=2", ["offset", "limit"]),
    ):
        result = assert_error(client.get(url), 400, "VALIDATION_ERROR")
        assert error_fields(result) == repeated, url
    response = client.get(f"/event-stores/{store}/events?type=order.*&type=user.*")
    assert response.status_code == 200, response.text
    response = client.get(f"/event-stores/{store}/streams?streamType=a&streamType=b")
    assert response.status_code == 200, response.text


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


# The append routes (``LeanRoute``s, which run the same check themselves) and the token route.
WRITES: list[tuple[str, Any]] = [
    ("/{store}/streams/{stream_id}", {"events": [{"type": "a", "data": {}}]}),
    ("/{store}/streams/{stream_id}/events", {"events": [{"type": "a", "data": {}}]}),
    ("/{store}/streams", {"streams": [{"streamId": "s", "events": [{"type": "a"}]}]}),
    ("/{store}/events", {"events": [{"type": "a", "data": {}}]}),
    ("/{store}/query", {"query": {"items": [{"types": ["a"]}]}}),
    ("/{store}/ws-tokens", {}),
]


@pytest.mark.parametrize(("path", "body"), WRITES, ids=[p for p, _ in WRITES])
def test_appends_and_tokens_refuse_unknown_parameters_by_name(
    client: TestClient, store: str, path: str, body: Any
) -> None:
    for base in PREFIXES:
        for name in ("bogus", "expectedStreamVersion", "filter[type]"):
            response = call(client, "POST", base + path, body, **{name: "1"})
            result = assert_error(response, 400, "VALIDATION_ERROR")
            assert result == {
                "error": "VALIDATION_ERROR",
                "message": f"unknown query parameter {name!r} (this route accepts: none)",
                "details": [
                    {"field": name, "message": "unknown query parameter; this route accepts: none"}
                ],
            }
        several = call(client, "POST", base + path, body, zeta="1", alpha="2", apiKey="dg_x")
        assert error_fields(assert_error(several, 400, "VALIDATION_ERROR")) == ["zeta", "alpha"]
    # Nothing was appended.
    assert client.get(f"/event-stores/{store}").json()["statistics"]["totalEvents"] == 0
    # The API key parameter is no unknown one.
    assert call(client, "POST", "/event-stores" + path, body, apiKey="dg_x").status_code < 300


def test_the_appends_and_tokens_openapi_lists_no_query_parameter(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for router in (appends.router, ws_tokens.router):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            assert any(d.dependency is DECLARED_ONLY.dependency for d in route.dependencies)
            assert declared(route) == {"apiKey"}
            for method in route.methods:
                operation = spec["paths"][route.path][method.lower()]
                assert not [p for p in operation.get("parameters", []) if p["in"] == "query"]
