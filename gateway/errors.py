"""The contract's error body, and the one place that maps errors to HTTP statuses and WebSocket
close codes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match

from broker import BrokerError, RateLimited, Unavailable, codec

log = logging.getLogger("deltagate.http")

RETRY_AFTER_SECONDS = "2"
CLIENT_CLOSED_REQUEST = 499
"""nginx's status for a client that went away before its request was read: never sent, since no
one is there, but it is what the request ended with (and no 500: nothing failed here)."""

STATUS = {
    "VALIDATION_ERROR": 400,
    "INVALID_MESSAGE": 400,
    "CONFIRMATION_REQUIRED": 400,
    "NO_UPDATES": 400,
    "INVALID_SUBSCRIPTION_CONFIG": 400,
    "LIMIT_EXCEEDED": 400,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "EVENT_STORE_NOT_FOUND": 404,
    "SUBSCRIPTION_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "STREAM_VERSION_CONFLICT": 409,
    "EVENT_STORE_ALREADY_EXISTS": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "RATE_LIMIT_EXCEEDED": 429,
    "INSUFFICIENT_STORAGE": 507,
    "INTERNAL_ERROR": 500,
    "UNAVAILABLE": 503,
}

CLOSE_CODE = {
    "UNAUTHORIZED": 4001,
    "FORBIDDEN": 4003,
    "EVENT_STORE_NOT_FOUND": 4004,
    "PAYLOAD_TOO_LARGE": 1009,
    "RATE_LIMIT_EXCEEDED": 1013,
    "UNAVAILABLE": 1013,
    "DRAINING": 1012,
    "SLOW_CONSUMER": 4008,
    "INTERNAL_ERROR": 1011,
}


class ApiError(Exception):
    """An error answered in the contract's format: ``{error, message, details?}``."""

    def __init__(
        self,
        code: str,
        message: str,
        details: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 500)

    @classmethod
    def from_broker(cls, exc: BrokerError) -> ApiError:
        headers = {"Retry-After": RETRY_AFTER_SECONDS} if exc.temporary else None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(exc.retry_after)}
        details: Any = exc.details
        if exc.code == "VALIDATION_ERROR" and isinstance(details, dict):
            details = [details]  # a VALIDATION_ERROR lists each bad field
        return cls(exc.code, exc.message, details, headers=headers)

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return Response(
            codec.dumps(body), self.status, headers=self.headers, media_type="application/json"
        )


def validation_error(field: str, message: str) -> ApiError:
    return ApiError(
        "VALIDATION_ERROR", f"{field}: {message}", [{"field": field, "message": message}]
    )


def one_of(name: str, value: Any, alias: str, other: Any) -> Any:
    """A value two names may give (DeltaBase's and deltagate's, a header and a body field);
    given both, they must agree: a 400 naming ``name`` rather than one silently winning."""
    if value is not None and other is not None and value != other:
        raise validation_error(name, f"{value} contradicts {alias}={other} (the same option)")
    return value if value is not None else other


_WHERE = frozenset(("body", "query", "path", "header"))
_TYPE_TAGS = frozenset(("int", "str", "float", "bool", "list", "dict", "bytes", "none", "tuple"))


def _is_field(part: Any, where: frozenset[str] = _WHERE) -> bool:
    """Whether a part of a pydantic error location names a field (or an index), not where the
    request carried it (``body``) or which member of a union refused the value (``int``,
    ``constrained-int``, ``literal['any',...]``, ``function-after[...]``): a client knows its
    fields, not the validator's names for the shapes they may take."""
    if not isinstance(part, str):
        return True
    return part not in where and part not in _TYPE_TAGS and not any(c in part for c in "-[")


def validation_details(errors: Any, *, located: bool = True) -> list[dict[str, str]]:
    """Pydantic's errors as the contract's ``details``: one entry per bad field, named by its
    path (``events.0.schemaVersion``), with every reason it was refused (each member of a
    union says why it did not fit: joined with "or"). ``located``: FastAPI's errors, whose
    paths start with where the request carried the value (``body``, ``query``...); a model's
    own (``located=False``) start with its fields, which may be named ``query`` too (the DCB
    query's body)."""
    reasons: dict[str, list[str]] = {}
    where = _WHERE if located else frozenset()
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if loc and loc[0] in where:
            # (a parameter's name comes first, whatever it looks like: ``Idempotency-Key``)
            loc = loc[1:2] + tuple(p for p in loc[2:] if _is_field(p, where))
        else:
            loc = tuple(p for p in loc if _is_field(p, where))
        path = ".".join(str(p) for p in loc) or "body"
        messages = reasons.setdefault(path, [])
        message = str(error.get("msg", "invalid"))
        if message not in messages:
            messages.append(message)
    return [{"field": path, "message": " or ".join(msgs)} for path, msgs in reasons.items()]


def invalid_request(details: list[dict[str, str]]) -> ApiError:
    """One VALIDATION_ERROR listing each bad field (the message names the first five)."""
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return ApiError("VALIDATION_ERROR", summary or "invalid request", details)


METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route takes on this path: Starlette's 405 names only the first route
    whose path matched (GET and DELETE of one path are two routes). Asked of the routes, since
    included routers wrap theirs; a 405 is rare enough for the few lookups."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    )


async def unexpected(request: Request, exc: Exception) -> Response:
    """The answer to an error nothing else handled (the app's handler of ``Exception``, which
    Starlette's ``ServerErrorMiddleware`` calls, then re-raises for the server to log)."""
    log.exception("unhandled error", extra={"path": request.url.path})
    return ApiError("INTERNAL_ERROR", "internal error").response()


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(BrokerError)
    async def _broker(_: Request, exc: BrokerError) -> Response:
        if isinstance(exc, Unavailable):
            log.warning("redis unavailable", extra={"reason": exc.message})
        return ApiError.from_broker(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return invalid_request(validation_details(exc.errors())).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}.get(
            exc.status_code, "VALIDATION_ERROR" if exc.status_code < 500 else "INTERNAL_ERROR"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        error = ApiError(code, str(exc.detail), headers=headers)
        response = error.response()
        response.status_code = exc.status_code
        return response

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        # Routine (a closed tab, a client's timeout): no error, no traceback.
        log.debug(
            "client went away before its request body arrived", extra={"path": request.url.path}
        )
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    app.exception_handler(Exception)(unexpected)
