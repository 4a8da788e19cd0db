"""Webhook subscriptions over REST (contract section 4). Served under both ``/event-stores`` and
``/api/event-stores``; every route needs ``manage:subscriptions`` on its store.

``POST .../subscribe`` takes either body form of the contract: the SDK's
``{eventFilter, subscriberId?, subscriber: {type: "webhook", config: {...}}, position?}`` or the
seed config file's ``{id?, eventFilter, subscriberType: "webhook", webhook: {...}, position?}``.
Unknown fields and wrong types are a ``VALIDATION_ERROR``; a config that cannot work (bad URL or
pattern, absurd retry values) is an ``INVALID_SUBSCRIPTION_CONFIG``. Both are decided by the
broker (``broker/webhooks/request.py``), the one place a subscription is validated.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.responses import Response

from broker import (
    MAX_POSITION,
    SUBSCRIPTION_REQUEST_SCHEMA,
    InvalidSubscriptionConfig,
    SubscriptionRequest,
    TargetPolicy,
    WebhookSubscription,
    check_webhook_position,
    codec,
    parse_subscription,
)

from ..auth import Permission, require
from ..errors import ApiError, validation_error
from ..runtime import Runtime, RuntimeDep
from .bodies import json_response, parse, read_json, read_optional_json
from .params import DECLARED_ONLY, Confirm, Offset, confirmed

router = APIRouter(tags=["webhook subscriptions"], dependencies=[DECLARED_ONLY])
"""Every route refuses the query parameters it does not declare (``params.DECLARED_ONLY``)."""
REDACTED = "[redacted]"
SMALL_BODY = 64 * 1024


def declared(
    value: Any, targets: TargetPolicy, *, config_form_only: bool = False
) -> SubscriptionRequest:
    """Validate one subscription body (either form; the broker holds the one set of rules)."""
    try:
        return parse_subscription(value, targets=targets, config_form_only=config_form_only)
    except InvalidSubscriptionConfig as exc:
        raise ApiError(exc.code, exc.message, exc.problems) from None


def subscription_body(sub: WebhookSubscription, head: int) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret, nor its header values."""
    config = sub.config
    webhook: dict[str, Any] = {
        "url": config.shown_url,
        "headers": {name: REDACTED for name, _ in config.headers},
        "timeout": config.timeout_ms,
        "retryPolicy": config.retry.wire(),
    }
    content = config.content
    return {
        "subscriptionId": sub.id,
        "id": sub.id,
        "eventStoreName": sub.store,
        "eventStoreId": sub.store_id,
        "eventFilter": config.filter.wire,
        "streamId": config.filter.stream_id,
        "match": None if content is None else content.match_wire,
        "query": None if content is None or content.query is None else content.query.wire,
        "subscriberType": "webhook",
        "subscriberId": config.subscriber_id,
        "subscriber": {"type": "webhook", "config": webhook},
        "status": sub.status,
        "statusReason": sub.status_reason,
        "statusDetails": status_details(sub),
        "createdAt": sub.created_at,
        "updatedAt": sub.updated_at,
        "lastProcessedEventGlobalPosition": sub.position,
        "lag": max(0, head - sub.position),
        "lastError": sub.last_error,
        "lastErrorAt": sub.last_error_at,
        "lastSuccessAt": sub.last_success_at,
        "deadLetterCount": sub.dead_letters,
    }


def status_details(sub: WebhookSubscription) -> dict[str, Any] | None:
    """DeltaBase's ``statusDetails`` (an object in its SDK): null while active; otherwise
    ``message`` (the same text as ``statusReason``) and, after an auto-pause for a rewind, what
    the rewind was (``reason``: ``position-ahead`` | ``store-recreated``, ``position``,
    ``headPosition``, ``epoch``, ``subscriptionEpoch``)."""
    if sub.status == "active" and not sub.status_details:
        return None
    return {"message": sub.status_reason, **(sub.status_details or {})}


async def _one(rt: Runtime, store: str, sub: WebhookSubscription, status: int = 200) -> Response:
    head = await rt.log.head(store)
    return json_response(codec.dumps(subscription_body(sub, head)), status)


async def _optional_json(request: Request) -> dict[str, Any]:
    """A small JSON object body, or {} when there is none."""
    value = await read_optional_json(request, SMALL_BODY)
    if not isinstance(value, dict):
        raise ApiError(
            "VALIDATION_ERROR", "body: must be an object", [{"field": "body", "message": "object"}]
        )
    return value


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StrictStr | None = Field(None, max_length=1024)


# -- routes -----------------------------------------------------------------------------------


@router.post(
    "/event-stores/{store}/subscribe",
    status_code=201,
    summary="Create a webhook subscription (or get the identical existing one)",
    responses={200: {"description": "The identical subscription that existed already"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    # Named, like the other bodies (gateway/openapi.py hoists $defs).
                    "schema": {
                        "$defs": {"WebhookIn": SUBSCRIPTION_REQUEST_SCHEMA},
                        "$ref": "#/$defs/WebhookIn",
                    }
                }
            },
        }
    },
)
async def subscribe(store: str, request: Request, rt: RuntimeDep) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    wanted = declared(
        await read_json(request, rt.settings.max_body_bytes), rt.settings.webhook_targets
    )
    try:
        made = await rt.webhooks.create(
            store,
            wanted.config,
            sub_id=wanted.sub_id,
            position=wanted.position,
            secret=wanted.secret,
        )
    except InvalidSubscriptionConfig as exc:
        raise ApiError(exc.code, exc.message, exc.problems) from None
    head = await rt.log.head(store)
    body = subscription_body(made.subscription, head)
    body["isExistingSubscription"] = made.outcome == "existing"
    if made.outcome == "existing":
        body["message"] = (
            f"subscription '{made.subscription.id}' already has this filter, URL, headers and "
            "timeout: it is returned instead of a new one"
        )
    if made.secret is not None:
        body["signingSecret"] = made.secret
    return json_response(codec.dumps(body), 201 if made.outcome == "created" else 200)


@router.get(
    "/event-stores/{store}/subscriptions",
    summary="List webhook subscriptions (oldest first)",
    description="`totalCount` counts every subscription the filters keep, before paging.",
)
async def list_subscriptions(
    store: str,
    request: Request,
    rt: RuntimeDep,
    subscriber_type: Annotated[
        str | None,
        Query(alias="subscriberType", max_length=64, description="Only this type (`webhook`)"),
    ] = None,
    event_filter: Annotated[
        str | None,
        Query(
            alias="eventFilter",
            max_length=256,
            description="Only subscriptions with this pattern among their `eventFilter`",
        ),
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="At most this many")] = None,
    offset: Offset = 0,
) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    subs = [
        s
        for s in await rt.webhooks.subscriptions(store)
        if (subscriber_type is None or subscriber_type == "webhook")
        and (event_filter is None or event_filter in s.config.filter.patterns)
    ]
    page = subs[offset:] if limit is None else subs[offset : offset + limit]
    head = await rt.log.head(store)
    return json_response(
        codec.dumps(
            {"subscriptions": [subscription_body(s, head) for s in page], "totalCount": len(subs)}
        )
    )


@router.delete("/event-stores/{store}/subscriptions", summary="Delete every webhook subscription")
async def delete_subscriptions(
    store: str, request: Request, rt: RuntimeDep, confirm: Confirm = None
) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    if not confirmed(confirm):
        raise ApiError(
            "CONFIRMATION_REQUIRED",
            "this deletes every subscription of the store; repeat with ?confirm=true",
        )
    deleted = await rt.webhooks.delete(store, None)
    return json_response(
        codec.dumps(
            {"success": True, "deleted": deleted, "message": f"{deleted} subscriptions deleted"}
        )
    )


@router.get("/event-stores/{store}/subscriptions/{sub_id}", summary="Get a webhook subscription")
async def get_subscription(store: str, sub_id: str, request: Request, rt: RuntimeDep) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    return await _one(rt, store, await rt.webhooks.get(store, sub_id))


@router.delete(
    "/event-stores/{store}/subscriptions/{sub_id}", summary="Delete a webhook subscription"
)
async def delete_subscription(
    store: str, sub_id: str, request: Request, rt: RuntimeDep
) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    await rt.webhooks.delete(store, sub_id)
    return json_response(
        codec.dumps({"success": True, "message": f"subscription '{sub_id}' deleted"})
    )


@router.post(
    "/event-stores/{store}/subscriptions/{sub_id}/pause",
    summary="Pause deliveries (body: optional {reason})",
)
async def pause(store: str, sub_id: str, request: Request, rt: RuntimeDep) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    body = parse(PauseIn, await _optional_json(request))
    sub = await rt.webhooks.set_status(
        store, sub_id, "paused", body.reason or "paused through the API"
    )
    return await _one(rt, store, sub)


@router.post(
    "/event-stores/{store}/subscriptions/{sub_id}/resume",
    summary="Resume deliveries (also after an auto-pause); body: optional {position}",
)
async def resume(store: str, sub_id: str, request: Request, rt: RuntimeDep) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    await rt.webhooks.get(store, sub_id)  # a missing store or subscription first, as elsewhere
    body = await _optional_json(request)
    unknown = sorted(set(body) - {"position"})
    if unknown:
        raise ApiError(
            "VALIDATION_ERROR",
            f"{unknown[0]}: is not a known field",
            [{"field": name, "message": "is not a known field"} for name in unknown],
        )
    try:
        position = (
            None if body.get("position") is None else check_webhook_position(body["position"])
        )
    except InvalidSubscriptionConfig as exc:  # (a malformed field: as a create answers it)
        raise validation_error("position", exc.message) from None
    try:
        sub = await rt.webhooks.resume(store, sub_id, position)
    except InvalidSubscriptionConfig as exc:
        raise ApiError(exc.code, exc.message, exc.problems) from None
    return await _one(rt, store, sub)


@router.get(
    "/event-stores/{store}/subscriptions/{sub_id}/dead-letters",
    summary="Events whose delivery attempts ran out",
)
async def dead_letters(
    store: str,
    sub_id: str,
    request: Request,
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=MAX_POSITION)] = 100,
    offset: Offset = 0,
) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    texts, total = await rt.webhooks.dead_letters(
        store, sub_id, offset=offset, limit=min(limit, 1000)
    )
    return json_response(
        codec.json_object({"totalCount": total}, deadLetters="[" + ",".join(texts) + "]")
    )


@router.post(
    "/event-stores/{store}/subscriptions/{sub_id}/dead-letters/redrive",
    summary="Deliver every dead letter again",
)
async def redrive_all(store: str, sub_id: str, request: Request, rt: RuntimeDep) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    moved = await rt.webhooks.redrive(store, sub_id)
    return json_response(codec.dumps({"success": True, "redriven": moved}))


@router.post(
    "/event-stores/{store}/subscriptions/{sub_id}/dead-letters/{event_id}/redrive",
    summary="Deliver one dead letter again",
)
async def redrive_one(
    store: str, sub_id: str, event_id: str, request: Request, rt: RuntimeDep
) -> Response:
    await require(request, Permission.MANAGE_SUBSCRIPTIONS, store)
    moved = await rt.webhooks.redrive(store, sub_id, event_id)
    if not moved:
        raise ApiError(
            "NOT_FOUND",
            f"subscription '{sub_id}' has no dead letter for event '{event_id}'",
            {"subscriptionId": sub_id, "eventId": event_id},
        )
    return json_response(codec.dumps({"success": True, "redriven": moved}))
