"""Events over REST: append to a stream, read a stream, query a store, list its streams (contract
section 1). Served under both ``/event-stores`` and ``/api/event-stores``."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from broker import (
    MAX_POSITION,
    AppendResult,
    Filter,
    InvalidFilter,
    LoggedEvent,
    NewEvent,
    check_name,
    codec,
    valid_store_name,
)

from ..auth import Permission, require
from ..errors import ApiError, validation_error
from ..runtime import RuntimeDep
from .answers import Appended, EventsPage, StreamRead, StreamsPage, answers
from .bodies import AppendBody, body_schema, json_response, parse, read_json

router = APIRouter(tags=["event stores"])


def stream_id_of(value: str) -> str:
    try:
        return check_name(value, "streamId")
    except InvalidFilter as exc:
        raise validation_error("streamId", str(exc)) from None


# -- append ----------------------------------------------------------------------------------


def append_body(result: AppendResult) -> bytes:
    return codec.dumps(
        {
            "success": True,
            "streamId": result.stream_id,
            "nextExpectedStreamVersion": result.stream_version,
            "currentStreamVersion": result.stream_version,
            "eventsWritten": result.events_written,
            "globalPosition": result.last_position,
            "transactionId": result.transaction_id,
        }
    )


async def _append(
    store: str,
    stream_id: str,
    request: Request,
    rt: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    principal = await require(request, Permission.WRITE, store)
    await rt.limits.hit(principal.key_id, "append")
    if not valid_store_name(store):
        raise ApiError(
            "EVENT_STORE_NOT_FOUND",
            f"event store '{store}' does not exist",
            {"eventStoreName": store},
        )
    stream_id = stream_id_of(stream_id)
    body = parse(AppendBody, await read_json(request, rt.settings.max_body_bytes))
    limit = rt.settings.max_events_per_append
    if len(body.events) > limit:
        raise validation_error("events", f"at most {limit} events per append")
    options = body.options
    expected = options.expectedStreamVersion if options else None
    if expected is None:
        expected = body.expectedStreamVersion
    key = (
        idempotency_key
        if idempotency_key is not None
        else (options.idempotencyKey if options else None)
    )
    if key is not None and not 1 <= len(key) <= 255:
        raise validation_error("Idempotency-Key", "must be 1 to 255 characters")
    events = [NewEvent(e.type, e.data, e.metadata, e.schemaVersion) for e in body.events]
    started = time.perf_counter()
    result = await rt.log.append(
        store,
        stream_id,
        events,
        expected="any" if expected is None else expected,
        idempotency_key=key,
        auto_create=rt.settings.auto_create,
    )
    rt.metrics.append_duration.observe(time.perf_counter() - started)
    if not result.replayed:
        rt.metrics.events_appended.inc(result.events_written)
    if result.created_store:
        await rt.stores.register(store)
    return json_response(append_body(result), 201)


for _path, _summary in (
    ("/event-stores/{store}/streams/{stream_id}", "Append events to a stream"),
    ("/event-stores/{store}/streams/{stream_id}/events", "Append events to a stream (alias)"),
):
    router.add_api_route(
        _path,
        _append,
        methods=["POST"],
        status_code=201,
        summary=_summary,
        openapi_extra=body_schema(AppendBody),
        name=_summary,
        responses=answers(201, Appended, "Appended, all events or none"),
    )


# -- reading ---------------------------------------------------------------------------------


def events_response(events: list[LoggedEvent], **fields: Any) -> Response:
    return json_response(codec.json_object(fields, events=codec.events_array(events)))


Position = Annotated[int | None, Query(ge=0, le=MAX_POSITION)]
Limit = Annotated[int, Query(ge=1, le=MAX_POSITION)]


@router.get(
    "/event-stores/{store}/streams/{stream_id}",
    summary="Read one stream",
    responses=answers(200, StreamRead, "The stream's events (none for a missing stream)"),
)
async def read_stream(
    store: str,
    stream_id: str,
    request: Request,
    rt: RuntimeDep,
    direction: Literal["forward", "backward"] = "forward",
    from_: Annotated[int | None, Query(alias="from", ge=0, le=MAX_POSITION)] = None,
    from_stream_position: Annotated[
        int | None, Query(alias="fromStreamPosition", ge=0, le=MAX_POSITION)
    ] = None,
    to: Position = None,
    limit: Limit = 1000,
) -> Response:
    await require(request, Permission.READ, store)
    stream_id = stream_id_of(stream_id)
    start = from_ if from_ is not None else from_stream_position
    events, version = await rt.log.read_stream(
        store, stream_id, direction=direction, start=start, end=to, limit=min(limit, 1000)
    )
    return events_response(events, currentStreamVersion=version)


@router.get(
    "/event-stores/{store}/events",
    summary="Query the events of a whole store",
    responses=answers(200, EventsPage, "A page of matching events"),
)
async def query_events(
    store: str,
    request: Request,
    rt: RuntimeDep,
    stream_id: Annotated[str | None, Query(alias="streamId")] = None,
    types: Annotated[list[str] | None, Query(alias="type")] = None,
    from_position: Annotated[int | None, Query(alias="fromPosition", ge=0, le=MAX_POSITION)] = None,
    to_position: Annotated[int | None, Query(alias="toPosition", ge=0, le=MAX_POSITION)] = None,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    sort_direction: Annotated[
        Literal["asc", "desc", "forward", "backward"], Query(alias="sortDirection")
    ] = "asc",
    include_count: Annotated[bool, Query(alias="includeCount")] = False,
) -> Response:
    await require(request, Permission.READ, store)
    flt: Filter | None = None
    if types or stream_id is not None:
        try:
            flt = Filter.parse(types or ["*"], stream_id)
        except InvalidFilter as exc:
            raise validation_error(
                "streamId" if "streamId" in str(exc) else "type", str(exc)
            ) from None
    limit = min(limit, 1000)
    page = await rt.log.query(
        store,
        flt=flt,
        from_position=from_position,
        to_position=to_position,
        limit=limit,
        offset=offset,
        direction="forward" if sort_direction in ("asc", "forward") else "backward",
        include_count=include_count,
    )
    pagination: dict[str, Any] = {"limit": limit, "offset": offset, "hasMore": page.has_more}
    if page.total is not None:
        pagination["total"] = page.total
    return events_response(page.events, pagination=pagination)


@router.get(
    "/event-stores/{store}/streams",
    summary="List the streams of a store",
    responses=answers(200, StreamsPage, "A page of streams"),
)
async def list_streams(
    store: str,
    request: Request,
    rt: RuntimeDep,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    search: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    await require(request, Permission.READ, store)
    limit = min(limit, 1000)
    streams, total = await rt.log.list_streams(store, limit=limit, offset=offset, prefix=search)
    return json_response(
        codec.dumps(
            {
                "streams": [
                    {
                        "streamId": s.stream_id,
                        "streamPosition": s.stream_position,
                        "streamType": s.stream_type,
                        "createdAt": s.created_at,
                        "updatedAt": s.updated_at,
                    }
                    for s in streams
                ],
                "pagination": {
                    "limit": limit,
                    "offset": offset,
                    "total": total,
                    "hasMore": offset + len(streams) < total,
                },
            }
        )
    )
