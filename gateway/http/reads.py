"""Reading over REST: one stream, the whole store's events, the list of its streams (contract
sections 1 and 7). Served under both ``/event-stores`` and ``/api/event-stores``.

Size: ~430 lines because the three read routes share their parameter parsing (positions,
dates, sort, paging) and answer shapes; split by route they would import each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from broker import (
    MAX_POSITION,
    ExpectedVersion,
    Filter,
    InvalidFilter,
    LoggedEvent,
    Page,
    StreamCheck,
    StreamOrder,
    check_name,
    check_pattern,
    check_version,
    codec,
)

from ..auth import Permission, require
from ..errors import one_of, validation_error
from ..runtime import Runtime, RuntimeDep
from .answers import EventsPage, StreamEventsPage, StreamsPage, answers
from .answers import StreamRead as StreamReadAnswer
from .bodies import json_response, stream_id_of
from .params import (
    DATE,
    DECLARED_ONLY,
    IncludeArchived,
    IncludeCount,
    IncludeMetadata,
    Instant,
    Offset,
    SortDirection,
    descending,
    pagination,
)

router = APIRouter(tags=["event stores"], dependencies=[DECLARED_ONLY])
"""Every read refuses the query parameters it does not declare (``params.DECLARED_ONLY``)."""


def events_response(events: list[LoggedEvent], **fields: Any) -> Response:
    return json_response(codec.json_object(fields, events=codec.events_array(events)))


LAST = "streamPosition of the stream's last event, inclusive"
STREAM_DATE = "The stream's creation; " + DATE
STREAM: dict[str, Any] = {"ge": 0, "le": MAX_POSITION, "description": "streamPosition, inclusive"}
MAX_LIMIT = 1000


def expected_version(value: str | None) -> ExpectedVersion:
    if value is None:
        return "any"
    if value in ("any", "no_stream", "stream_exists"):
        return value  # type: ignore[return-value]
    if value.isascii() and value.isdigit() and int(value) <= MAX_POSITION:
        return int(value)
    raise validation_error(
        "expectedStreamVersion", "a version (0 or more), any, no_stream or stream_exists"
    )


class StreamRead:
    """The options of a stream read, under DeltaBase's names and deltagate's older ones.
    Forward, a read goes from ``fromStreamPosition`` (default 0) up to ``toStreamPosition``;
    backward, from ``fromStreamPosition`` (default: the last event) down to ``toStreamPosition``."""

    def __init__(
        self,
        direction: Annotated[
            Literal["forward", "backward"] | None, Query(description="`forward` (default)")
        ] = None,
        from_stream_position: Annotated[
            int | None, Query(alias="fromStreamPosition", **STREAM)
        ] = None,
        from_: Annotated[int | None, Query(alias="from", **STREAM)] = None,
        to_stream_position: Annotated[int | None, Query(alias="toStreamPosition", **STREAM)] = None,
        to: Annotated[int | None, Query(alias="to", **STREAM)] = None,
        limit: Annotated[
            int | None, Query(ge=1, le=MAX_POSITION, description="At most 1000 (the default)")
        ] = None,
        max_count: Annotated[
            int | None, Query(alias="maxCount", ge=1, le=MAX_POSITION, description="= limit")
        ] = None,
        expected: Annotated[
            str | None,
            Query(
                alias="expectedStreamVersion",
                description="A version, `any`, `no_stream` or `stream_exists`: any other version "
                "than this is a 409 STREAM_VERSION_CONFLICT",
            ),
        ] = None,
    ) -> None:
        self.direction = direction
        self.start = one_of("fromStreamPosition", from_stream_position, "from", from_)
        self.end = one_of("toStreamPosition", to_stream_position, "to", to)
        self.limit = min(one_of("maxCount", max_count, "limit", limit) or MAX_LIMIT, MAX_LIMIT)
        self.expected = expected_version(expected)


@router.get(
    "/event-stores/{store}/streams/{stream_id}",
    summary="Read one stream",
    responses=answers(200, StreamReadAnswer, "The stream's events (none for a missing stream)"),
)
async def read_stream(
    store: str,
    stream_id: str,
    request: Request,
    rt: RuntimeDep,
    read: Annotated[StreamRead, Depends()],
) -> Response:
    """A stream's events by stream position, and its version. Any other query parameter is a
    400 naming it."""
    await require(request, Permission.READ, store)
    stream_id = stream_id_of(stream_id)
    part = await rt.log.read_stream(
        store,
        stream_id,
        direction=read.direction or "forward",
        start=read.start,
        end=read.end,
        limit=read.limit,
    )
    check_version(stream_id, read.expected, part.version)
    fields: dict[str, Any] = {"currentStreamVersion": part.version}
    if part.truncated_before is not None:
        fields["truncatedBefore"] = part.truncated_before
    return events_response(part.events, **fields)


NAME: dict[str, Any] = {"min_length": 1, "max_length": 256}
GLOBAL: dict[str, Any] = {"ge": 0, "le": MAX_POSITION, "description": "globalPosition, inclusive"}


class EventFilters:
    """Filters on the events' own fields, which DeltaBase documents alike on the store query and
    on a stream's events. Each one given is applied (``broker.query``)."""

    def __init__(
        self,
        types: Annotated[
            list[str] | None,
            Query(alias="type", description="Event type or pattern (`order.*`); repeat: any of"),
        ] = None,
        event_id: Annotated[str | None, Query(alias="eventId", **NAME)] = None,
        transaction_id: Annotated[str | None, Query(alias="transactionId", **NAME)] = None,
        from_position: Annotated[int | None, Query(alias="fromPosition", **GLOBAL)] = None,
        to_position: Annotated[int | None, Query(alias="toPosition", **GLOBAL)] = None,
        from_date: Annotated[str | None, Query(alias="fromDate", description=DATE), Instant] = None,
        to_date: Annotated[str | None, Query(alias="toDate", description=DATE), Instant] = None,
        sort_by: Annotated[
            Literal["globalPosition", "createdAt", "streamPosition"],
            Query(
                alias="sortBy",
                description="`globalPosition` (default) and `createdAt` order alike (times are "
                "stamped in log order); `streamPosition` too within one stream, and needs one",
            ),
        ] = "globalPosition",
        sort_direction: SortDirection = None,
        offset: Offset = 0,
        include_count: IncludeCount = False,
        include_archived: IncludeArchived = False,  # (no archived streams: read the same)
    ) -> None:
        self.types = types
        self.event_id = event_id
        self.transaction_id = transaction_id
        self.from_position = from_position
        self.to_position = to_position
        self.from_date: datetime | None = from_date  # type: ignore[assignment]  # (Instant)
        self.to_date: datetime | None = to_date  # type: ignore[assignment]  # (Instant)
        self.sort_by = sort_by
        self.sort_direction = sort_direction
        self.offset = offset
        self.include_count = include_count

    def filter(self, stream_id: str | None) -> Filter | None:
        if self.sort_by == "streamPosition" and stream_id is None:
            raise validation_error(
                "sortBy",
                "streamPosition orders the events of one stream: give streamId, or sort by "
                "globalPosition or createdAt (one order, the log's)",
            )
        if not self.types and stream_id is None:
            return None
        try:
            return Filter.parse(self.types or ["*"], stream_id)
        except InvalidFilter as exc:
            field = "streamId" if "streamId" in str(exc) else "type"
            raise validation_error(field, str(exc)) from None

    async def page(
        self,
        rt: Runtime,
        store: str,
        flt: Filter | None,
        limit: int,
        *,
        direction: str | None = None,
        stream_range: tuple[int | None, int | None] = (None, None),
    ) -> Page:
        return await rt.log.query(
            store,
            flt=flt,
            from_position=self.from_position,
            to_position=self.to_position,
            limit=limit,
            offset=self.offset,
            direction="backward" if descending(self.sort_direction, direction) else "forward",
            include_count=self.include_count,
            event_id=self.event_id,
            transaction_id=self.transaction_id,
            from_date=self.from_date,
            to_date=self.to_date,
            from_stream_position=stream_range[0],
            to_stream_position=stream_range[1],
        )


@router.get(
    "/event-stores/{store}/events",
    summary="Query the events of a whole store",
    responses=answers(200, EventsPage, "A page of matching events"),
)
async def query_events(
    store: str,
    request: Request,
    rt: RuntimeDep,
    where: Annotated[EventFilters, Depends()],
    stream_id: Annotated[str | None, Query(alias="streamId")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POSITION, description="At most 1000")] = 100,
) -> Response:
    """Events of the whole store, in log order, paginated. Every filter given is applied; any
    other query parameter is a 400 naming it."""
    await require(request, Permission.READ, store)
    flt = where.filter(stream_id)
    limit = min(limit, MAX_LIMIT)
    page = await where.page(rt, store, flt, limit)
    fields: dict[str, Any] = {
        "pagination": pagination(limit, where.offset, page.has_more, page.total)
    }
    if page.truncated_before is not None:
        fields["truncatedBefore"] = page.truncated_before
    return events_response(page.events, **fields)


@router.get(
    "/event-stores/{store}/streams/{stream_id}/events",
    summary="Read one stream's events, filtered",
    responses=answers(200, StreamEventsPage, "A page of the stream's matching events"),
)
async def read_stream_events(
    store: str,
    stream_id: str,
    request: Request,
    rt: RuntimeDep,
    read: Annotated[StreamRead, Depends()],
    where: Annotated[EventFilters, Depends()],
) -> Response:
    """A stream read (the options of ``GET .../streams/{streamId}``) that also takes the store
    query's filters (``type``, ``eventId``, dates...) and its paging: every filter given is
    applied; any other query parameter is a 400 naming it."""
    await require(request, Permission.READ, store)
    stream_id = stream_id_of(stream_id)
    flt = where.filter(stream_id)
    backward = descending(where.sort_direction, read.direction)
    page = await where.page(
        rt,
        store,
        flt,
        read.limit,
        direction=read.direction,
        stream_range=(read.end, read.start) if backward else (read.start, read.end),
    )
    version = page.stream_version or 0
    check_version(stream_id, read.expected, version)
    fields: dict[str, Any] = {
        "currentStreamVersion": version,
        "pagination": pagination(read.limit, where.offset, page.has_more, page.total),
    }
    if page.stream_truncated_before is not None:
        fields["truncatedBefore"] = page.stream_truncated_before
    return events_response(page.events, **fields)


class StreamFilters:
    """The streams list's filters, orders and paging (DeltaBase's names, and deltagate's
    ``search``). Each one given is applied (``broker.query.StreamCheck``)."""

    def __init__(
        self,
        stream_id: Annotated[str | None, Query(alias="streamId", **NAME)] = None,
        pattern: Annotated[
            str | None,
            Query(alias="streamIdPattern", description="`*` matches any run (`order-*`)", **NAME),
        ] = None,
        search: Annotated[
            str | None,
            Query(max_length=256, description="deltagate: ids containing this text, any case"),
        ] = None,
        min_position: Annotated[
            int | None, Query(alias="minPosition", ge=0, le=MAX_POSITION, description=LAST)
        ] = None,
        max_position: Annotated[
            int | None, Query(alias="maxPosition", ge=0, le=MAX_POSITION, description=LAST)
        ] = None,
        from_date: Annotated[
            str | None, Query(alias="fromDate", description=STREAM_DATE), Instant
        ] = None,
        to_date: Annotated[
            str | None, Query(alias="toDate", description=STREAM_DATE), Instant
        ] = None,
        sort_by: Annotated[
            StreamOrder,
            Query(alias="sortBy", description="`createdAt` (default: creation order)"),
        ] = "createdAt",
        sort_direction: SortDirection = None,
        limit: Annotated[int, Query(ge=1, le=MAX_POSITION, description="At most 1000")] = 100,
        offset: Offset = 0,
        include_count: IncludeCount = False,
        include_archived: IncludeArchived = False,  # (no archived streams: list the same)
        include_metadata: IncludeMetadata = False,  # (no stream metadata: list the same)
    ) -> None:
        self.stream_id = None if stream_id is None else checked(stream_id, "streamId")
        self.pattern = None if pattern is None else checked(pattern, "streamIdPattern", True)
        self.search = search
        self.min_position = min_position
        self.max_position = max_position
        self.from_date: datetime | None = from_date  # type: ignore[assignment]  # (Instant)
        self.to_date: datetime | None = to_date  # type: ignore[assignment]  # (Instant)
        self.sort_by = sort_by
        self.descending = descending(sort_direction)
        self.limit = min(limit, MAX_LIMIT)
        self.offset = offset
        # includeCount: the total is always given.

    async def response(self, rt: Runtime, store: str, types: list[str] | None) -> Response:
        for stream_type in types or ():
            checked(stream_type, "streamType")
        check = StreamCheck(
            types=types,
            stream_id=self.stream_id,
            pattern=self.pattern,
            contains=self.search,
            min_position=self.min_position,
            max_position=self.max_position,
            from_date=self.from_date,
            to_date=self.to_date,
        )
        streams, total = await rt.log.list_streams(
            store,
            limit=self.limit,
            offset=self.offset,
            where=check,
            sort_by=self.sort_by,
            descending=self.descending,
        )
        more = self.offset + len(streams) < total
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
                    "pagination": pagination(self.limit, self.offset, more, total),
                }
            )
        )


@router.get(
    "/event-stores/{store}/streams",
    summary="List the streams of a store",
    responses=answers(200, StreamsPage, "A page of streams"),
)
async def list_streams(
    store: str,
    request: Request,
    rt: RuntimeDep,
    listing: Annotated[StreamFilters, Depends()],
    stream_types: Annotated[
        list[str] | None,
        Query(
            alias="streamType",
            description="The id up to its first `-`, `_` or `:`; repeat: any of",
        ),
    ] = None,
) -> Response:
    """A page of the store's streams. Every filter given is applied; `pagination.total` is
    always there (`includeCount` is accepted); any other query parameter is a 400 naming it."""
    await require(request, Permission.READ, store)
    return await listing.response(rt, store, stream_types)


@router.get(
    "/event-stores/{store}/stream-types/{stream_type}/streams",
    summary="List one type's streams",
    responses=answers(200, StreamsPage, "A page of the type's streams"),
)
async def list_streams_of_type(
    store: str,
    stream_type: str,
    request: Request,
    rt: RuntimeDep,
    listing: Annotated[StreamFilters, Depends()],
) -> Response:
    """The streams list for one stream type (the id up to its first `-`, `_` or `:`), with the
    list's other filters, orders and paging."""
    await require(request, Permission.READ, store)
    return await listing.response(rt, store, [stream_type])


def checked(value: str, field: str, pattern: bool = False) -> str:
    """A stream id, type or id pattern as a query parameter: non-empty text without control
    characters (a pattern also at most 16 ``*``)."""
    try:
        return check_pattern(value) if pattern else check_name(value, field)
    except InvalidFilter as exc:
        raise validation_error(field, str(exc)) from None
