"""The REST API (contract section 1). Served under both ``/event-stores`` and
``/api/event-stores``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from broker import (
    AppendResult,
    Filter,
    InvalidFilter,
    LoggedEvent,
    NewEvent,
    StoreInfo,
    check_name,
    codec,
    valid_store_name,
)

from .auth import Permission, check, require
from .errors import ApiError, validation_error
from .runtime import Runtime, runtime
from .schemas import AppendBody, CreateStoreBody, TokenBody, body_schema, parse

router = APIRouter(tags=["event stores"])
RuntimeDep = Annotated[Runtime, Depends(runtime)]


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status, media_type="application/json")


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refused past ``limit`` bytes and parsed strictly."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            "PAYLOAD_TOO_LARGE", f"request body is larger than {limit} bytes", {"limit": limit}
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                "PAYLOAD_TOO_LARGE", f"request body is larger than {limit} bytes", {"limit": limit}
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise validation_error("body", "a JSON body is required")
    try:
        return codec.loads(raw)
    except codec.JSONDecodeError as exc:
        raise validation_error("body", f"malformed JSON: {exc}") from None


async def read_optional_json(request: Request, limit: int) -> Any:
    """Like ``read_json``, but a request without a body reads as ``{}``."""
    if request.headers.get("content-length", "0") == "0" and (
        "transfer-encoding" not in request.headers
    ):
        return {}
    return await read_json(request, limit)


def stream_id_of(value: str) -> str:
    try:
        return check_name(value, "streamId")
    except InvalidFilter as exc:
        raise validation_error("streamId", str(exc)) from None


def store_body(store: StoreInfo) -> dict[str, Any]:
    return {
        "name": store.name,
        "description": store.description,
        "settings": store.settings,
        "createdAt": store.created_at,
        "statistics": {
            "totalStreams": store.total_streams,
            "totalEvents": store.total_events,
            "headPosition": store.head_position,
        },
    }


# -- stores ----------------------------------------------------------------------------------


@router.post(
    "/event-stores",
    status_code=201,
    openapi_extra=body_schema(CreateStoreBody),
    summary="Create an event store",
)
async def create_store(request: Request, rt: RuntimeDep) -> Response:
    principal = await require(request, Permission.MANAGE_STORES)
    body = parse(CreateStoreBody, await read_json(request, rt.settings.max_body_bytes))
    check(principal, Permission.MANAGE_STORES, body.name)
    store = await rt.stores.create(body.name, description=body.description, settings=body.settings)
    return json_response(codec.dumps(store_body(store)), 201)


@router.get("/event-stores", summary="List event stores")
async def list_stores(request: Request, rt: RuntimeDep) -> Response:
    principal = await require(request, Permission.READ)
    stores = [s for s in await rt.stores.list() if principal.may_use(s.name)]
    return json_response(
        codec.dumps({"eventStores": [store_body(s) for s in stores], "totalCount": len(stores)})
    )


@router.get("/event-stores/{store}", summary="Describe an event store with statistics")
async def get_store(store: str, request: Request, rt: RuntimeDep) -> Response:
    await require(request, Permission.READ, store)
    return json_response(codec.dumps(store_body(await rt.stores.get(store))))


@router.delete("/event-stores/{store}", summary="Delete an event store and all its events")
async def delete_store(
    store: str, request: Request, rt: RuntimeDep, confirm: bool = False
) -> Response:
    await require(request, Permission.MANAGE_STORES, store)
    if not confirm:
        raise ApiError(
            "CONFIRMATION_REQUIRED",
            "deleting a store removes all its events; repeat with ?confirm=true",
        )
    await rt.stores.delete(store)
    return json_response(
        codec.dumps({"success": True, "message": f"event store '{store}' deleted"})
    )


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
    )


# -- reading ---------------------------------------------------------------------------------


def events_response(events: list[LoggedEvent], **fields: Any) -> Response:
    return json_response(codec.json_object(fields, events=codec.events_array(events)))


Position = Annotated[int | None, Query(ge=0, le=2**53)]
Limit = Annotated[int, Query(ge=1, le=2**53)]


@router.get("/event-stores/{store}/streams/{stream_id}", summary="Read one stream")
async def read_stream(
    store: str,
    stream_id: str,
    request: Request,
    rt: RuntimeDep,
    direction: Literal["forward", "backward"] = "forward",
    from_: Annotated[int | None, Query(alias="from", ge=0, le=2**53)] = None,
    from_stream_position: Annotated[
        int | None, Query(alias="fromStreamPosition", ge=0, le=2**53)
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


@router.get("/event-stores/{store}/events", summary="Query the events of a whole store")
async def query_events(
    store: str,
    request: Request,
    rt: RuntimeDep,
    stream_id: Annotated[str | None, Query(alias="streamId")] = None,
    types: Annotated[list[str] | None, Query(alias="type")] = None,
    from_position: Annotated[int | None, Query(alias="fromPosition", ge=0, le=2**53)] = None,
    to_position: Annotated[int | None, Query(alias="toPosition", ge=0, le=2**53)] = None,
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


@router.get("/event-stores/{store}/streams", summary="List the streams of a store")
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


# -- browser tokens --------------------------------------------------------------------------


@router.post(
    "/event-stores/{store}/ws-tokens",
    status_code=201,
    openapi_extra=body_schema(TokenBody),
    summary="Mint a short-lived WebSocket token for a browser",
)
async def mint_token(store: str, request: Request, rt: RuntimeDep) -> Response:
    principal = await require(request, Permission.CONNECT, store)
    check(principal, Permission.READ, store)
    body = parse(TokenBody, await read_optional_json(request, rt.settings.max_body_bytes))
    patterns: list[str] | None = None
    if body.eventFilter is not None or body.streamId is not None:
        try:
            flt = Filter.parse(
                body.eventFilter if body.eventFilter is not None else "*", body.streamId
            )
        except InvalidFilter as exc:
            raise validation_error("eventFilter", str(exc)) from None
        patterns = list(flt.patterns)
    await rt.log.head(store)  # unknown store -> 404
    token, expires = rt.auth.tokens.mint(
        key_id=principal.key_id or "admin",
        store=store,
        ttl=body.ttlSeconds,
        patterns=patterns,
        stream_id=body.streamId,
    )
    expires_at = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
    return json_response(codec.dumps({"token": token, "expiresAt": expires_at}), 201)
