"""``LeanRoute``: a FastAPI route as FastAPI describes it (OpenAPI, routing, error handlers), called
without FastAPI's per-request parameter solving.

Why: FastAPI solves a route's parameters on every request, walking its dependency graph and
validating each path parameter and header through pydantic (and, in this FastAPI, asking the
annotations whether they are sequences each time). py-spy on a pod under the append benchmark put
that at ~10% of the pod's CPU for a single-event append, more than the body's validation, while
the append routes take nothing that needs it: path parameters that are plain strings, an optional
header, the request and the pod's runtime.

So a ``LeanRoute`` reads its endpoint's parameters once, when the route is built, into a list of
plain getters, and refuses at start any parameter it does not know how to bind (it never binds
one differently from FastAPI: a route that needs more stays an ``APIRoute``). What it binds:

- path parameters annotated ``str`` (the router already matched them; no constraints allowed),
- headers annotated ``str | None`` with a default of None (``request.headers.get``, as FastAPI),
- the ``Request``, the ``runtime`` dependency (``RuntimeDep``),
- ``params.DECLARED_ONLY``: the same check of the query string, run before the endpoint as
  FastAPI runs router dependencies; an empty query string costs nothing.

The endpoint's signature stays the one source of what the route takes, for OpenAPI and for this
binding alike.

``mount`` adds a router's lean routes to the app's own route list instead of ``include_router``:
this FastAPI matches an included router's routes through two more layers per request (an
``_IncludedRouter`` matched once to choose it and once more to run it), and runs each route in two
``AsyncExitStack``s for dependencies with ``yield``, which lean routes never have. A mounted lean
route is a plain ``APIRoute`` in the app's list, described in OpenAPI as an included one would be,
and its ASGI app calls the handler and sends its response; errors go to the app's exception
handlers as from any route. The pod's app goes further and calls a lean route's ``handler``
itself, past the middleware stack (``gateway.app.Gateway``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..runtime import runtime, runtime_of
from .params import DECLARED_ONLY, declared_by, refuse_undeclared

Getter = Callable[[Request], Any]


def _unsupported(route: APIRoute, what: str) -> TypeError:
    return TypeError(f"LeanRoute {route.path}: cannot bind {what}; use a plain APIRoute")


def _path_getter(name: str) -> Getter:
    return lambda request: request.path_params[name]


def _header_getter(name: str) -> Getter:
    lowered = name.lower()
    return lambda request: request.headers.get(lowered)


def _getters(route: APIRoute, dependant: Dependant) -> tuple[list[tuple[str, Getter]], bool]:
    """(parameter name, getter) for each of the endpoint's parameters, and whether the query
    string is checked against what the route declares."""
    getters: list[tuple[str, Getter]] = []
    checked = False
    for field in dependant.path_params:
        info = field.field_info
        if info.annotation is not str or info.metadata:
            raise _unsupported(route, f"path parameter {field.name!r} (only plain str)")
        getters.append((field.name, _path_getter(field.alias)))
    for field in dependant.header_params:
        info = field.field_info
        if info.annotation != str | None or info.default is not None or info.metadata:
            raise _unsupported(route, f"header {field.name!r} (only str | None = None)")
        if info.alias is None:
            raise _unsupported(route, f"header {field.name!r} without an alias")
        getters.append((field.name, _header_getter(info.alias)))
    for sub in dependant.dependencies:
        if sub.call is runtime and sub.name is not None:
            getters.append((sub.name, runtime_of))
        elif sub.call is DECLARED_ONLY.dependency and sub.name is None:
            checked = True
        else:
            raise _unsupported(route, f"dependency {sub.call!r}")
    if dependant.request_param_name is not None:
        getters.append((dependant.request_param_name, lambda request: request))
    others = (
        dependant.query_params,
        dependant.cookie_params,
        dependant.body_params,
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        dependant.response_param_name,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
    )
    if any(others):
        raise _unsupported(route, "query, cookie or body parameters, or special parameters")
    return getters, checked


class LeanRoute(APIRoute):
    """An ``APIRoute`` whose endpoint is called with its parameters bound by plain getters."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if kwargs.get("max_body_size") is not None:
            raise TypeError(f"LeanRoute {path}: bodies are bounded by the handler, not FastAPI")
        handler = self.handler = self.get_route_handler()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handler(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app  # used when mounted in the app's own list (``mount``)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        getters, checked = _getters(self, self.dependant)
        allowed = declared_by(self.dependant)
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            if checked and request.scope["query_string"]:
                refuse_undeclared(request, allowed)
            response: Response = await endpoint(**{name: get(request) for name, get in getters})
            return response

        return handler


def mount(
    app: FastAPI,
    router: APIRouter,
    *,
    prefix: str = "",
    include_in_schema: bool = True,
    responses: dict[int | str, Any] | None = None,
) -> None:
    """Add ``router``'s routes (all ``LeanRoute``s) to ``app``'s own route list under ``prefix``,
    described as ``app.include_router`` with these arguments would describe them, and tried
    before the other routes added so far (FastAPI's own ``/openapi.json`` and ``/docs`` among
    them): give them paths no earlier route can match."""
    before = len(app.router.routes)
    for route in router.routes:
        if not isinstance(route, LeanRoute):
            raise TypeError(f"mount: {route!r} is not a LeanRoute")
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            status_code=route.status_code,
            tags=list(route.tags),
            dependencies=list(route.dependencies),
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses={**(responses or {}), **route.responses},
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=route.operation_id,
            include_in_schema=route.include_in_schema and include_in_schema,
            name=route.name,
            openapi_extra=route.openapi_extra,
            route_class_override=LeanRoute,
        )
    routes = app.router.routes
    added = routes[before:]
    del routes[before:]
    front = next((i for i, r in enumerate(routes) if not isinstance(r, LeanRoute)), len(routes))
    routes[front:front] = added  # after the lean routes mounted earlier, before the others
