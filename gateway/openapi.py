"""The pod's OpenAPI description (``/openapi.json``, ``/docs``): FastAPI's, plus what FastAPI cannot
learn from routes that read their own bodies and answer raw Responses.

- ``ERRORS``: the contract's error body, for every 4xx (FastAPI's default 422 never happens: a bad
  request is a 400 ``VALIDATION_ERROR``) and for 503 (Redis unreachable, or the pod draining).
- ``install``: request schemas built with ``model_json_schema()`` keep their nested models under
  ``$defs``, which an OpenAPI document cannot resolve from inside an operation; they move into
  ``components/schemas``. And ``LINKS`` are added: how an answer's fields feed the next request
  (a created store's name, an appended stream, a subscription's id), so clients and stateful
  testers (schemathesis) can follow the API from one call to the next.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

DEFS = "#/$defs/"
COMPONENTS = "#/components/schemas/"


class ErrorBody(BaseModel):
    """The contract's error answer."""

    error: str
    message: str
    details: Any = None


ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": ErrorBody,
        "description": "Refused: VALIDATION_ERROR, CONFIRMATION_REQUIRED (400), UNAUTHORIZED "
        "(401), FORBIDDEN (403), EVENT_STORE_NOT_FOUND, SUBSCRIPTION_NOT_FOUND, NOT_FOUND (404), "
        "STREAM_VERSION_CONFLICT, EVENT_STORE_ALREADY_EXISTS (409), PAYLOAD_TOO_LARGE (413), "
        "RATE_LIMIT_EXCEEDED (429, with Retry-After)",
    },
    503: {
        "model": ErrorBody,
        "description": "UNAVAILABLE: Redis is unreachable or this pod is draining; retry after "
        "Retry-After",
    },
}


STORE = "/event-stores/{store}"
SUBSCRIPTION = STORE + "/subscriptions/{sub_id}"
FROM_STORE = {"store": "$request.path.store"}
CREATED_STORE = {"store": "$response.body#/name"}
CREATED_SUBSCRIPTION = {**FROM_STORE, "sub_id": "$response.body#/id"}
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("/event-stores", "post", "201"): {
        "GetStore": (STORE, "get", CREATED_STORE),
        "AppendToStream": (STORE + "/streams/{stream_id}", "post", CREATED_STORE),
        "QueryEvents": (STORE + "/events", "get", CREATED_STORE),
        "ListStreams": (STORE + "/streams", "get", CREATED_STORE),
        "MintToken": (STORE + "/ws-tokens", "post", CREATED_STORE),
        "Subscribe": (STORE + "/subscribe", "post", CREATED_STORE),
        "ListSubscriptions": (STORE + "/subscriptions", "get", CREATED_STORE),
        "DeleteStore": (STORE, "delete", CREATED_STORE),
    },
    (STORE + "/streams/{stream_id}", "post", "201"): {
        "ReadStream": (
            STORE + "/streams/{stream_id}",
            "get",
            {**FROM_STORE, "stream_id": "$response.body#/streamId"},
        ),
    },
    (STORE + "/subscribe", "post", "201"): {
        "GetSubscription": (SUBSCRIPTION, "get", CREATED_SUBSCRIPTION),
        "PauseSubscription": (SUBSCRIPTION + "/pause", "post", CREATED_SUBSCRIPTION),
        "ResumeSubscription": (SUBSCRIPTION + "/resume", "post", CREATED_SUBSCRIPTION),
        "DeadLetters": (SUBSCRIPTION + "/dead-letters", "get", CREATED_SUBSCRIPTION),
        "DeleteSubscription": (SUBSCRIPTION, "delete", CREATED_SUBSCRIPTION),
    },
}


def _operation_ref(path: str, method: str) -> str:
    pointer = path.replace("~", "~0").replace("/", "~1").replace("{", "%7B").replace("}", "%7D")
    return f"#/paths/{pointer}/{method}"


def _add_links(paths: dict[str, Any]) -> None:
    for (path, method, status), links in LINKS.items():
        response = paths[path][method]["responses"][status]
        response["links"] = {
            name: {"operationRef": _operation_ref(target, verb), "parameters": parameters}
            for name, (target, verb, parameters) in links.items()
        }


def _hoist(node: Any, components: dict[str, Any]) -> Any:
    """``node`` with every ``$defs`` moved into ``components`` and its references rewritten."""
    if isinstance(node, list):
        return [_hoist(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    for name, schema in node.get("$defs", {}).items():
        components.setdefault(name, _hoist(schema, components))
    out = {k: _hoist(v, components) for k, v in node.items() if k != "$defs"}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(DEFS):
        out["$ref"] = COMPONENTS + ref.removeprefix(DEFS)
    return out


def install(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            schema["paths"] = _hoist(schema["paths"], components)
            _add_links(schema["paths"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
