"""Reading over REST: one stream, the whole store's events, the list of its streams (contract
sections 1 and 7). Served under both ``/event-stores`` and ``/api/event-stores``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from broker import MAX_POSITION, Filter, InvalidFilter, LoggedEvent, codec

from ..auth import Permission, require
from ..errors import validation_error
from ..runtime import RuntimeDep
from .bodies import json_response
from .events import stream_id_of
from .params import DECLARED_ONLY

router = APIRouter(tags=["event stores"])


def events_response(events: list[LoggedEvent], **fields: Any) -> Response:
    return json_response(codec.json_object(fields, events=codec.events_array(events)))


Position = Annotated[int | None, Query(ge=0, le=MAX_POSITION)]
Limit = Annotated[int, Query(ge=1, le=MAX_POSITION)]


@router.get(
    "/event-stores/{store}/streams/{stream_id}",
    summary="Read one stream",
    dependencies=[DECLARED_ONLY],
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
    part = await rt.log.read_stream(
        store, stream_id, direction=direction, start=start, end=to, limit=min(limit, 1000)
    )
    fields: dict[str, Any] = {"currentStreamVersion": part.version}
    if part.truncated_before is not None:
        fields["truncatedBefore"] = part.truncated_before
    return events_response(part.events, **fields)


@router.get(
    "/event-stores/{store}/events",
    summary="Query the events of a whole store",
    dependencies=[DECLARED_ONLY],
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
    if page.truncated_before is not None:
        return events_response(
            page.events, pagination=pagination, truncatedBefore=page.truncated_before
        )
    return events_response(page.events, pagination=pagination)


@router.get(
    "/event-stores/{store}/streams",
    summary="List the streams of a store",
    dependencies=[DECLARED_ONLY],
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
