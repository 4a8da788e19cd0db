"""Events over REST: append to a stream (contract section 1; reading is ``reads.py``). Served under
both ``/event-stores`` and ``/api/event-stores``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from broker import (
    AppendResult,
    InvalidFilter,
    NewEvent,
    check_name,
    codec,
    valid_store_name,
)

from ..auth import Permission, require
from ..errors import ApiError, validation_error
from ..runtime import RuntimeDep
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
    )
