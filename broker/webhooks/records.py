"""A webhook subscription's record as kept in Redis, and its key layout.

Layout (names built in ``broker.keys.WebhookKeys``). Everything of one store's subscriptions
carries the store's hash tag, so each script below runs in the store's slot:

    dg:{store}:whuid            string  uid of the store the subscriptions last belonged to (the
                                        epoch of records made before each carried its own)
    dg:{store}:whs              zset    subscription id -> creation time (ms): the listing
    dg:{store}:whfp             hash    fingerprint (filter + URL + headers) -> id: duplicates
    dg:{store}:wh:<id>          hash    config JSON, secret, status, statusReason, statusDetails
                                        (JSON: why an auto-pause for a rewind), epoch (the store
                                        uid its position belongs to), position
                                        (lastProcessedEventGlobalPosition), startTime (a
                                        start ``{"time": ...}`` not reached yet), lastError,
                                        lastErrorAt, lastSuccessAt, failingSince, rev, ...
    dg:{store}:wh:<id>:lease    string  the dispatcher replica delivering it (expires)
    dg:{store}:wh:<id>:attempts hash    eventId -> "globalPosition|failed attempts"
    dg:{store}:wh:<id>:done     zset    positions delivered ahead of ``position``
    dg:{store}:wh:<id>:dlq      zset    dead-lettered eventId -> globalPosition
    dg:{store}:wh:<id>:redrive  zset    eventIds queued for redelivery -> globalPosition
    dg:{store}:wh:<id>:letters  hash    eventId -> dead-letter record JSON

``rev`` counts changes made through the API (pause, resume, redrive, a new config); the dispatcher
reloads a subscription whose ``rev`` moved. Two audiences write these keys: the API
(``store.WebhookStore``: create, pause, redrive, delete) and the dispatcher
(``progress.ProgressStore``: progress, failures and dead letters, every write fenced by the
lease, so a replica that lost it can never move a subscription's progress).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .. import codec
from .config import WebhookConfig

Status = Literal["active", "paused", "auto-paused"]
Outcome = Literal["created", "existing", "updated", "unchanged"]


@dataclass(frozen=True, slots=True)
class WebhookSubscription:
    store: str
    id: str
    config: WebhookConfig
    status: Status
    created_at: str
    updated_at: str
    position: int
    """lastProcessedEventGlobalPosition: every matching event up to it is finished."""
    rev: int
    secret: str
    """Signs deliveries. Shown to the API client only when the subscription is created."""
    status_reason: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    last_success_at: str | None = None
    failing_since_ms: int | None = None
    dead_letters: int = 0
    store_id: str = ""
    """The store's uid (its ``eventStoreId``, the epoch)."""
    status_details: dict[str, Any] | None = None
    """Why the subscription was auto-paused for a rewind (``reason``: ``store-recreated`` or
    ``position-ahead``, ``position``, ``headPosition``, ``epoch``, ``subscriptionEpoch``)."""
    epoch: str | None = None
    """The store uid its position belongs to (set at creation and at every resume)."""
    start_time: datetime | None = None
    """Created or resumed from a time (``position: {"time": ...}``), and no event created at or
    after it read yet: events after ``position`` created before it are passed over, not
    delivered. The dispatcher drops it with the first save after it read the start (an event
    created at or after it, matching or not); from there on the position alone says where to
    go on."""

    @classmethod
    def from_record(
        cls, store: str, record: dict[str, str], dead: int = 0, store_id: str = ""
    ) -> WebhookSubscription:
        since = record.get("failingSince")
        details = record.get("statusDetails")
        start = record.get("startTime")
        return cls(
            store=store,
            id=record["id"],
            config=WebhookConfig.from_wire(codec.loads(record["config"])),
            status=record.get("status", "active"),  # type: ignore[arg-type]
            created_at=record.get("createdAt", ""),
            # A change of status is an update too (stamps are ``now_iso``'s: text order is time's).
            updated_at=max(record.get("updatedAt", ""), record.get("statusChangedAt", "")),
            position=int(record.get("position") or 0),
            rev=int(record.get("rev") or 0),
            secret=record.get("secret", ""),
            status_reason=record.get("statusReason") or None,
            last_error=record.get("lastError") or None,
            last_error_at=record.get("lastErrorAt") or None,
            last_success_at=record.get("lastSuccessAt") or None,
            failing_since_ms=int(since) if since else None,
            dead_letters=dead,
            store_id=store_id,
            status_details=codec.loads(details) if details else None,
            epoch=record.get("epoch") or None,
            start_time=datetime.fromisoformat(start) if start else None,
        )


@dataclass(frozen=True, slots=True)
class Created:
    subscription: WebhookSubscription
    outcome: Outcome
    secret: str | None
    """The signing secret, only when this call created the subscription."""


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What a dispatcher taking a subscription over needs besides its record."""

    attempts: dict[str, int]
    """eventId -> failed attempts so far, for events after ``position``."""
    done: set[int]
    """Positions after ``position`` already delivered."""
    redrive: int
    """Dead letters queued for redelivery."""
