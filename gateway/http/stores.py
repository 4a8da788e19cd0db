"""Event stores over REST: create, list, describe, delete (contract section 1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from broker import MAX_POSITION, StoreInfo, codec

from ..auth import Permission, check, require
from ..errors import ApiError
from ..runtime import RuntimeDep
from .answers import Deleted, StoreList, StoreOut, answers
from .bodies import (
    CreateStoreBody,
    UpdateStoreBody,
    body_schema,
    json_response,
    parse,
    read_json,
    read_optional_json,
)
from .params import DECLARED_ONLY, Confirm, Offset, confirmed

router = APIRouter(tags=["event stores"], dependencies=[DECLARED_ONLY])


def store_body(store: StoreInfo) -> dict[str, Any]:
    """A store as the API shows it: DeltaBase's fields (``eventStoreId``, ``eventStoreName``,
    ``created``) beside deltagate's first names for them (``epoch``, ``name``, ``createdAt``)."""
    return {
        "eventStoreId": store.uid,
        "eventStoreName": store.name,
        "name": store.name,
        "description": store.description,
        "settings": store.settings,
        "created": store.created_at,
        "createdAt": store.created_at,
        "epoch": store.uid,
        "statistics": {
            "totalStreams": store.total_streams,
            "totalEvents": store.total_events,
            "databaseSizeBytes": store.bytes,
            "oldestEventTimestamp": store.oldest_at,
            "newestEventTimestamp": store.newest_at,
            "headPosition": store.head_position,
            "hotEvents": store.hot_events,
            "archivedEvents": store.archived_events,
            "oldestPosition": store.oldest if store.head_position else None,
        },
    }


@router.post(
    "/event-stores",
    status_code=201,
    openapi_extra=body_schema(CreateStoreBody),
    summary="Create an event store",
    responses=answers(201, StoreOut, "The new store"),
)
async def create_store(request: Request, rt: RuntimeDep) -> Response:
    rt.refuse_evicting_redis()  # (a write like an append: not into a Redis that may evict it)
    principal = await require(request, Permission.MANAGE_STORES)
    body = parse(CreateStoreBody, await read_json(request, rt.settings.max_body_bytes))
    check(principal, Permission.MANAGE_STORES, body.name)
    store = await rt.stores.create(body.name, description=body.description, settings=body.settings)
    return json_response(codec.dumps(store_body(store)), 201)


@router.get(
    "/event-stores",
    summary="List event stores",
    responses=answers(200, StoreList, "The stores this key may use"),
)
async def list_stores(
    request: Request,
    rt: RuntimeDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_POSITION, description="At most 1000; 50 by default")
    ] = 50,
    offset: Offset = 0,
    name_filter: Annotated[
        str | None,
        Query(alias="filter", max_length=256, description="Names containing this text, any case"),
    ] = None,
) -> Response:
    """A page of the stores the caller may use, by name; ``totalCount`` counts all that match.
    Any other query parameter is a 400 naming it."""
    principal = await require(request, Permission.READ)
    stores, total = await rt.stores.page(
        limit=min(limit, 1000), offset=offset, contains=name_filter, visible=principal.may_use
    )
    return json_response(
        codec.dumps({"eventStores": [store_body(s) for s in stores], "totalCount": total})
    )


@router.get(
    "/event-stores/{store}",
    summary="Describe an event store with statistics",
    responses=answers(200, StoreOut, "The store"),
)
async def get_store(store: str, request: Request, rt: RuntimeDep) -> Response:
    await require(request, Permission.READ, store)
    return json_response(codec.dumps(store_body(await rt.stores.get(store))))


@router.patch(
    "/event-stores/{store}/settings",
    openapi_extra=body_schema(UpdateStoreBody),
    summary="Change an event store's description and settings",
    responses=answers(200, StoreOut, "The store, changed"),
)
async def update_store(store: str, request: Request, rt: RuntimeDep) -> Response:
    """A JSON merge patch of ``{description?, settings?}``: what it names changes (settings merge
    key by key), null removes. 200 with the store; a body changing nothing is 400 NO_UPDATES."""
    await require(request, Permission.MANAGE_STORES, store)
    body = parse(UpdateStoreBody, await read_optional_json(request, rt.settings.max_body_bytes))
    changes = body.changes()
    if not changes:
        raise ApiError(
            "NO_UPDATES",
            "no updates were provided: give description and/or settings",
            {"eventStoreName": store},
        )
    return json_response(codec.dumps(store_body(await rt.stores.update(store, changes))))


@router.delete(
    "/event-stores/{store}",
    summary="Delete an event store and all its events",
    responses=answers(200, Deleted, "Deleted"),
)
async def delete_store(
    store: str, request: Request, rt: RuntimeDep, confirm: Confirm = None
) -> Response:
    await require(request, Permission.MANAGE_STORES, store)
    if not confirmed(confirm):
        raise ApiError(
            "CONFIRMATION_REQUIRED",
            "deleting a store removes all its events; repeat with ?confirm=true",
        )
    await rt.stores.delete(store)
    return json_response(
        codec.dumps({"success": True, "message": f"event store '{store}' deleted"})
    )
