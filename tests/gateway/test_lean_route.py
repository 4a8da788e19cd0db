"""``LeanRoute`` binds only what it binds exactly as FastAPI would, and refuses the rest when the
route is built; ``mount`` puts lean routes in front, described as an included router's."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.routing import APIRoute
from rest_support import TestClient
from starlette.responses import Response

from gateway import errors
from gateway.http.lean import LeanRoute, mount
from gateway.http.params import DECLARED_ONLY
from gateway.runtime import RuntimeDep


async def a_query(store: str, limit: Annotated[int, Query()] = 1) -> Response:
    return Response()


async def an_int_path(store: int) -> Response:
    return Response()


async def a_required_header(store: str, key: Annotated[str, Header(alias="X-Key")]) -> Response:
    return Response()


def some_dependency() -> int:
    return 1


async def another_dependency(store: str, n: Annotated[int, Depends(some_dependency)]) -> Response:
    return Response()


@pytest.mark.parametrize(
    "endpoint",
    [a_query, an_int_path, a_required_header, another_dependency],
    ids=["query", "int path", "required header", "dependency"],
)
def test_what_it_cannot_bind_is_refused_at_start(endpoint: object) -> None:
    router = APIRouter(route_class=LeanRoute)
    with pytest.raises(TypeError, match="LeanRoute"):
        router.add_api_route("/s/{store}", endpoint, methods=["POST"])  # type: ignore[arg-type]


async def echo(
    store: str,
    request: Request,
    rt: RuntimeDep,
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    assert rt is request.app.state.runtime
    return Response(f"{store}|{key}|{request.method}".encode(), 201)


def test_mounted_routes_bind_like_fastapi_and_go_first() -> None:
    router = APIRouter(route_class=LeanRoute, dependencies=[DECLARED_ONLY])
    router.add_api_route("/s/{store}", echo, methods=["POST"], summary="Echo")
    app = FastAPI()
    errors.install(app)
    app.state.runtime = object()
    app.add_api_route("/t", echo, methods=["GET"])
    for prefix in ("", "/api"):
        mount(app, router, prefix=prefix, include_in_schema=not prefix)
    paths = [r.path for r in app.router.routes if isinstance(r, APIRoute)]
    assert paths[:3] == ["/s/{store}", "/api/s/{store}", "/t"]
    with TestClient(app) as client:
        assert client.post("/s/a%20b", headers={"idempotency-KEY": "k"}).text == "a b|k|POST"
        assert client.post("/api/s/x").text == "x|None|POST"
        assert client.post("/s/x?bogus=1").json()["error"] == "VALIDATION_ERROR"
        spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/s/{store}", "/t"}
    operation = spec["paths"]["/s/{store}"]["post"]
    assert operation["summary"] == "Echo"
    assert {(p["in"], p["name"]) for p in operation["parameters"]} == {
        ("path", "store"),
        ("header", "Idempotency-Key"),
    }
