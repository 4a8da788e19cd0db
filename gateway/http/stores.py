"""Event stores over REST: create, list, describe, delete (contract section 1)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from broker import StoreInfo, codec

from ..auth import Permission, check, require
from ..errors import ApiError
from ..runtime import RuntimeDep
from .answers import Deleted, StoreList, StoreOut, answers
from .bodies import CreateStoreBody, body_schema, json_response, parse, read_json

router = APIRouter(tags=["event stores"])


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


@router.post(
    "/event-stores",
    status_code=201,
    openapi_extra=body_schema(CreateStoreBody),
    summary="Create an event store",
    responses=answers(201, StoreOut, "The new store"),
)
async def create_store(request: Request, rt: RuntimeDep) -> Response:
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
async def list_stores(request: Request, rt: RuntimeDep) -> Response:
    principal = await require(request, Permission.READ)
    stores = [s for s in await rt.stores.list() if principal.may_use(s.name)]
    return json_response(
        codec.dumps({"eventStores": [store_body(s) for s in stores], "totalCount": len(stores)})
    )


@router.get(
    "/event-stores/{store}",
    summary="Describe an event store with statistics",
    responses=answers(200, StoreOut, "The store"),
)
async def get_store(store: str, request: Request, rt: RuntimeDep) -> Response:
    await require(request, Permission.READ, store)
    return json_response(codec.dumps(store_body(await rt.stores.get(store))))


@router.delete(
    "/event-stores/{store}",
    summary="Delete an event store and all its events",
    responses=answers(200, Deleted, "Deleted"),
)
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
