"""Appends over REST (contract sections 1 and 7): to one stream, to several streams atomically,
and DeltaBase's DCB append and query (conditions checked and events appended in one atomic
step: broker/log.py, docs/dcb.md). Served under both ``/event-stores`` and ``/api/event-stores``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from broker import AppendResult, ConditionFailed, LoggedEvent, codec, valid_store_name

from ..auth import Permission, require
from ..errors import ApiError, one_of, validation_error
from ..runtime import Runtime, RuntimeDep
from .answers import (
    Appended,
    DcbAppended,
    DcbConflict,
    DcbQueryAnswer,
    StreamsAppended,
    answers,
)
from .bodies import (
    AppendBody,
    DcbAppendBody,
    DcbQueryBody,
    StreamsAppendBody,
    append_request,
    body_schema,
    dcb_request,
    json_response,
    parse,
    read_json,
    stream_id_of,
    streams_request,
)
from .lean import LeanRoute
from .params import DECLARED_ONLY

router = APIRouter(tags=["event stores"], route_class=LeanRoute, dependencies=[DECLARED_ONLY])


def events_json(*groups: Sequence[LoggedEvent]) -> Any:
    return codec.fragment(codec.events_array_of(groups))


def stream_result(result: AppendResult) -> dict[str, Any]:
    return {
        "streamId": result.stream_id,
        "nextExpectedStreamVersion": result.stream_version,
        "currentStreamVersion": result.stream_version,
        "eventsWritten": result.events_written,
        "eventsAppended": result.events_written,
        "createdNewStream": result.created_stream,
        "globalPosition": result.last_position,
        "transactionId": result.transaction_id,
        "events": events_json(result.events),
    }


async def _admit(request: Request, rt: Runtime, store: str) -> Any:
    """Who appends, within their rate, to a store that can exist, into a Redis that keeps it."""
    rt.refuse_evicting_redis()
    principal = await require(request, Permission.WRITE, store)
    await rt.limits.hit(principal.key_id, "append")
    if not valid_store_name(store):
        if rt.settings.auto_create:
            # Where an append would create the store, say why this one cannot be.
            raise validation_error(
                "store",
                f"'{store}' cannot be an event store's name: 3 to 63 characters of a-z, 0-9, "
                "'_' and '-'",
            )
        raise ApiError(
            "EVENT_STORE_NOT_FOUND",
            f"event store '{store}' does not exist",
            {"eventStoreName": store},
        )
    return principal


def _check_count(rt: Runtime, count: int) -> None:
    limit = rt.settings.max_events_per_append
    if count > limit:
        raise validation_error("events", f"at most {limit} events per append")


def _idempotency(header: str | None, body: str | None) -> str | None:
    """The append's idempotency key: the ``Idempotency-Key`` header or the body's; both must
    agree (a retry sending only one of them would otherwise append again)."""
    key = one_of("Idempotency-Key", header, "idempotencyKey", body)
    if key is not None and not 1 <= len(key) <= 255:
        raise validation_error("Idempotency-Key", "must be 1 to 255 characters")
    return key


async def _appended(rt: Runtime, store: str, results: list[AppendResult], started: float) -> None:
    rt.metrics.append_duration.observe(time.perf_counter() - started)
    if not results[0].replayed:
        rt.metrics.events_appended.inc(sum(r.events_written for r in results))
    if results[0].created_store:
        await rt.stores.register(store)


async def _append(
    store: str,
    stream_id: str,
    request: Request,
    rt: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    await _admit(request, rt, store)
    stream_id = stream_id_of(stream_id)
    body = append_request(await read_json(request, rt.settings.max_body_bytes))
    _check_count(rt, len(body.events))
    key = _idempotency(idempotency_key, body.idempotency_key)
    started = time.perf_counter()
    result = await rt.log.append(
        store,
        stream_id,
        body.events,
        expected="any" if body.expected is None else body.expected,
        idempotency_key=key,
        auto_create=rt.settings.auto_create,
    )
    await _appended(rt, store, [result], started)
    return json_response(codec.dumps({"success": True, **stream_result(result)}), 201)


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


@router.post(
    "/event-stores/{store}/streams",
    status_code=201,
    openapi_extra=body_schema(StreamsAppendBody),
    summary="Append to several streams atomically (all or nothing, one transactionId)",
    responses=answers(201, StreamsAppended, "Appended to every stream, or to none"),
)
async def append_streams(
    store: str,
    request: Request,
    rt: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    await _admit(request, rt, store)
    body = streams_request(await read_json(request, rt.settings.max_body_bytes))
    _check_count(rt, sum(len(events) for _, events, _ in body.parts))
    parts = [  # (stream ids checked with the body: ``StreamPart``, ``fast_streams``)
        (stream_id, events, "any" if expected is None else expected)
        for stream_id, events, expected in body.parts
    ]
    _check_distinct(parts)
    key = _idempotency(idempotency_key, body.idempotency_key)
    started = time.perf_counter()
    results = await rt.log.append_streams(
        store, parts, idempotency_key=key, auto_create=rt.settings.auto_create
    )
    await _appended(rt, store, list(results), started)
    answer = {
        "success": True,
        "transactionId": results[0].transaction_id,
        "eventsWritten": sum(r.events_written for r in results),
        "eventsAppended": sum(r.events_written for r in results),
        "globalPosition": results[-1].last_position,
        "lastPosition": results[-1].last_position,
        "streams": [
            {k: v for k, v in stream_result(r).items() if k not in ("events", "transactionId")}
            for r in results
        ],
        "events": events_json(*(r.events for r in results)),
    }
    return json_response(codec.dumps(answer), 201)


def _check_distinct(parts: list[tuple[str, Any, Any]]) -> None:
    """Each stream once in an atomic append (as DeltaBase refuses it too): a second expected
    version for a stream would be ambiguous."""
    seen: set[str] = set()
    for index, (stream_id, _, _) in enumerate(parts):
        if stream_id in seen:
            raise validation_error(
                f"streams.{index}.streamId",
                f"stream {stream_id!r} is already in this append: give each stream once, with "
                "all of its events",
            )
        seen.add(stream_id)


@router.post(
    "/event-stores/{store}/events",
    status_code=201,
    openapi_extra=body_schema(DcbAppendBody),
    summary="DCB: append events with a condition, checked and appended atomically",
    responses={
        **answers(201, DcbAppended, "Appended"),
        **answers(409, DcbConflict, "The condition matched events after `after`"),
    },
)
async def append_dcb(
    store: str,
    request: Request,
    rt: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    await _admit(request, rt, store)
    body = dcb_request(await read_json(request, rt.settings.max_body_bytes))
    _check_count(rt, len(body.events))
    condition = after = None
    if body.condition is not None:
        condition = body.condition.failIfEventsMatch.parsed("condition.failIfEventsMatch")
        after = body.condition.after
    key = _idempotency(idempotency_key, body.idempotency_key)
    started = time.perf_counter()
    try:
        result = await rt.log.append_dcb(
            store,
            body.events,
            condition=condition,
            after=after,
            idempotency_key=key,
            auto_create=rt.settings.auto_create,
        )
    except ConditionFailed as exc:
        # DeltaBase's shape: the error is the sentence, the positions beside it.
        failed: dict[str, Any] = {
            "error": "Append condition failed",
            "message": exc.message,
            "details": exc.message,
            "conflictingPositions": exc.positions,
            "afterPosition": exc.after,
        }
        if exc.head is not None:
            failed["headPosition"] = exc.head  # (``after`` is past it: another history's)
        return json_response(codec.dumps(failed), 409)
    await _appended(rt, store, [result], started)
    answer = {
        "success": True,
        "lastPosition": result.last_position,
        "firstPosition": result.first_position,
        "eventsAppended": result.events_written,
        "transactionId": result.transaction_id,
        "events": events_json(result.events),
    }
    return json_response(codec.dumps(answer), 201)


@router.post(
    "/event-stores/{store}/query",
    openapi_extra=body_schema(DcbQueryBody),
    summary="DCB: the events matching a query (types and tags), after a position",
    responses=answers(200, DcbQueryAnswer, "The matching events"),
)
async def query_dcb(store: str, request: Request, rt: RuntimeDep) -> Response:
    await require(request, Permission.READ, store)
    body = parse(DcbQueryBody, await read_json(request, rt.settings.max_body_bytes))
    query = body.query.parsed("query")
    after = body.after or 0
    events, last = await rt.log.dcb_query(store, query, after=after, limit=body.limit)
    fields: dict[str, Any] = {"lastPosition": last}
    gone = await rt.log.gone_before(store, after)
    if gone is not None:
        fields["truncatedBefore"] = gone  # (history the query would start in is gone)
    return json_response(codec.json_object(fields, events=codec.events_array(events)))
