"""Query strings: a route takes the query parameters it declares, and refuses every other one.

Contract section 7, never a silent superset: a parameter the server does not know would otherwise
be ignored, and its caller would get more than it asked for without being told. Each REST route
of the reads, the appends, the store administration, the webhook subscriptions and the WebSocket
tokens takes ``DECLARED_ONLY`` as a dependency (the appends' ``LeanRoute`` runs the same check
without FastAPI's dependency machinery: ``gateway/http/lean.py``). It compares the request's query
string with the parameters the route declares (the same list FastAPI validates and writes into the
OpenAPI description, so what is documented, what is accepted and what is applied cannot drift
apart) and answers 400 ``VALIDATION_ERROR`` naming each unknown parameter. The ``apiKey``
credential (section 3) is accepted everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import field_annotation_is_sequence, request_params_to_args
from fastapi.routing import APIRoute
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from starlette.datastructures import QueryParams

from broker import parse_instant

from ..auth import API_KEY_PARAM
from ..errors import ApiError, invalid_request, validation_details, validation_error

if TYPE_CHECKING:
    from fastapi._compat import ModelField  # (the type of a Dependant's query_params)


class Declared(frozenset[str]):
    """The query parameters a route accepts (a set of names), and which of them may be given
    more than once (``repeatable``: those whose values are a list, such as ``type``)."""

    repeatable: frozenset[str]
    fields: tuple[ModelField, ...]
    """Every declared query parameter, to check the values of a query that also has a problem
    of its own (``refuse_undeclared``: every bad field is listed, not just the unknown ones)."""

    def __new__(
        cls, names: set[str], repeatable: set[str], fields: tuple[ModelField, ...] = ()
    ) -> Declared:
        declared = super().__new__(cls, names)
        declared.repeatable = frozenset(repeatable)
        declared.fields = fields
        return declared


_declared: dict[int, Declared] = {}
"""Per route (by identity: routes live as long as the app), the query parameters it declares."""


def _query_names(dependant: Dependant, repeatable: set[str], fields: list[ModelField]) -> set[str]:
    names = set()
    for param in dependant.query_params:
        names.add(param.alias)
        fields.append(param)
        if field_annotation_is_sequence(param.field_info.annotation):
            repeatable.add(param.alias)
    for sub in dependant.dependencies:
        names |= _query_names(sub, repeatable, fields)
    return names


def declared_by(dependant: Dependant) -> Declared:
    """The query parameters a route with this ``dependant`` accepts: those it (and its
    dependencies) declare, and the API key."""
    repeatable: set[str] = set()
    fields: list[ModelField] = []
    names = _query_names(dependant, repeatable, fields) | {API_KEY_PARAM}
    unique = {field.alias: field for field in fields}  # (a dependency shared by two paths)
    return Declared(names, repeatable, tuple(unique.values()))


def declared(route: APIRoute) -> Declared:
    """The query parameters ``route`` accepts: those it declares, and the API key."""
    names = _declared.get(id(route))
    if names is None:
        names = _declared[id(route)] = declared_by(route.dependant)
    return names


def refuse_undeclared(request: Request, allowed: Declared) -> None:
    """400 ``VALIDATION_ERROR`` naming each query parameter of ``request`` not in ``allowed``,
    and each one given more than once that takes one value (``query_problem``)."""
    problem = query_problem(request.query_params, allowed, allowed.repeatable)
    if problem is None:
        return
    # The declared parameters' own values are checked too, so that every bad field is listed
    # at once (the route's validation, which would say the rest, does not run after this).
    _, errors = request_params_to_args(allowed.fields, request.query_params)
    if not errors:
        raise problem
    named = {d["field"] for d in problem.details or ()}
    rest = [d for d in validation_details(errors) if d["field"] not in named]
    raise invalid_request([*(problem.details or ()), *rest])


def query_problem(
    params: QueryParams, allowed: frozenset[str], repeatable: frozenset[str] = frozenset()
) -> ApiError | None:
    """What is wrong with a query, as a ``VALIDATION_ERROR`` (None: nothing): the parameters
    not in ``allowed``, each named, else those given more than once that are not
    ``repeatable`` (``limit=1&limit=3`` would otherwise keep one of them silently). The one
    check of every route's query: REST (``refuse_undeclared``), SSE and the WebSocket's upgrade."""
    unknown = list(dict.fromkeys(name for name in params if name not in allowed))
    if unknown:
        accepted = ", ".join(sorted(allowed - {API_KEY_PARAM})) or "none"
        message = f"unknown query parameter; this route accepts: {accepted}"
        return ApiError(
            "VALIDATION_ERROR",
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(name) for name in unknown)} (this route accepts: {accepted})",
            [{"field": name, "message": message} for name in unknown],
        )
    repeated = [
        name
        for name in dict.fromkeys(params)
        if name not in repeatable and len(params.getlist(name)) > 1
    ]
    if repeated:
        return ApiError(
            "VALIDATION_ERROR",
            f"query parameter{'s' if len(repeated) > 1 else ''} "
            f"{', '.join(repr(name) for name in repeated)} given more than once "
            "(each takes one value)",
            [{"field": name, "message": "given more than once"} for name in repeated],
        )
    return None


async def _declared_only(request: Request) -> None:
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        refuse_undeclared(request, declared(route))


DECLARED_ONLY = Depends(_declared_only)
"""Add to a route's (or router's) ``dependencies`` to refuse the query parameters it does not
declare."""


# -- what several routes share ---------------------------------------------------------------

Offset = Annotated[int, Query(ge=0, le=10_000_000, description="Matches to skip")]
Confirm = Annotated[
    str | None,
    Query(max_length=16, description="`true` to confirm; anything else is not a confirmation"),
]


def confirmed(value: str | None) -> bool:
    """A destructive request's ``confirm``: exactly ``true`` (not ``yes``, ``1`` or ``on``,
    which a boolean parameter would take for it)."""
    return value == "true"


IncludeCount = Annotated[
    bool, Query(alias="includeCount", description="Add `pagination.total`, every match counted")
]
IncludeArchived = Annotated[
    bool,
    Query(
        alias="includeArchived",
        description="DeltaBase's: include archived streams. deltagate never archives a stream "
        "(its PostgreSQL archive is storage every read crosses), so both values read the same",
    ),
]
IncludeMetadata = Annotated[
    bool,
    Query(
        alias="includeMetadata",
        description="DeltaBase's: include each stream's metadata. deltagate keeps none beyond "
        "the fields every stream carries, so both values list the same",
    ),
]
SortDirection = Annotated[
    str | None,
    Query(
        alias="sortDirection",
        pattern="^(asc|desc|forward|backward)$",
        description="`asc` (default) or `desc`; `forward`/`backward` say the same",
    ),
]
DATE = "ISO 8601 date-time, inclusive (`2024-01-15T12:30:00Z`; without an offset: UTC) or date"


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value.strip())
    except ValueError as exc:
        raise PydanticCustomError(
            "date_time", "{reason} (such as 2024-01-15T12:30:00Z)", {"reason": str(exc)}
        ) from None


Instant = AfterValidator(_instant)
"""A query parameter's ISO 8601 date-time (or date: its midnight; no offset is UTC), read as an
aware datetime in UTC (``broker.parse_instant``): checked with the route's other parameters, so
a 400 lists every bad one."""


def descending(sort_direction: str | None, direction: str | None = None) -> bool:
    """Whether a read goes newest first. ``direction`` (stream reads) and ``sortDirection``
    (queries) say the same thing; given both, they must agree."""
    wanted = {d in ("desc", "backward") for d in (sort_direction, direction) if d is not None}
    if len(wanted) > 1:
        raise validation_error(
            "sortDirection", f"{sort_direction!r} contradicts direction={direction!r}"
        )
    return wanted == {True}


def pagination(limit: int, offset: int, has_more: bool, total: int | None) -> dict[str, Any]:
    """A list answer's ``pagination``: ``total`` only when it was counted."""
    page: dict[str, Any] = {"limit": limit, "offset": offset, "hasMore": has_more}
    if total is not None:
        page["total"] = total
    return page
