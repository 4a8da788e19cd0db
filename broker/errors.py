"""Every error the broker raises: small, carrying protocol data, and saying whether a retry can
help (``temporary``). The gateway maps them to HTTP statuses and WebSocket close codes in exactly
one place (``gateway/errors.py``), by ``code``.
"""

from __future__ import annotations

from typing import Any


class BrokerError(Exception):
    code = "INTERNAL"
    temporary = False

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# -- stores and the log ------------------------------------------------------------------------


class StoreNotFound(BrokerError):
    code = "EVENT_STORE_NOT_FOUND"

    def __init__(self, store: str) -> None:
        super().__init__(f"event store '{store}' does not exist", {"eventStoreName": store})


class StoreAlreadyExists(BrokerError):
    code = "EVENT_STORE_ALREADY_EXISTS"

    def __init__(self, store: str) -> None:
        super().__init__(f"event store '{store}' already exists", {"eventStoreName": store})


class VersionConflict(BrokerError):
    code = "STREAM_VERSION_CONFLICT"

    def __init__(self, stream_id: str, expected: object, current: int) -> None:
        super().__init__(
            f"stream '{stream_id}' is at version {current}, expected {expected}",
            {"streamId": stream_id, "expectedVersion": expected, "currentVersion": current},
        )


class ConditionFailed(BrokerError):
    """A DCB append whose condition matched events after ``after``: nothing was written."""

    code = "APPEND_CONDITION_FAILED"

    def __init__(self, positions: list[int], after: int | None, head: int | None = None) -> None:
        after = after or 0  # (no ``after``: from the start, as DeltaBase's number says)
        details: dict[str, int | list[int]] = {
            "conflictingPositions": positions,
            "afterPosition": after,
        }
        message = f"{len(positions)} event(s) match the append condition after position {after}"
        if head is not None:
            # ``after`` lies past the store's head: a position of another history (the store
            # was created again, or lost writes), for which the condition cannot be checked.
            details["headPosition"] = head
            message = (
                f"after ({after}) is past the store's head ({head}): it is no position of this "
                "store's history; query again and decide on what it holds"
            )
        super().__init__(message, details)
        self.positions = positions
        self.after = after
        self.head = head


class EventTooLarge(BrokerError):
    code = "PAYLOAD_TOO_LARGE"


class InvalidEvent(BrokerError):
    """An event the log cannot store as JSON: its data or metadata nests too deeply."""

    code = "VALIDATION_ERROR"


class InvalidSettings(BrokerError):
    """Store settings deltagate cannot act on; ``details`` lists each bad field."""

    code = "VALIDATION_ERROR"

    def __init__(self, problems: list[dict[str, str]]) -> None:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        super().__init__(summary, problems)


class InvalidFilter(ValueError):
    """A pattern, stream id or type a filter cannot hold. Callers report it as a validation
    error of the field it came from."""


class TooManyPatterns(BrokerError):
    """A subscription would take a store's live feed on this pod past its distinct
    multi-wildcard patterns (``fanout.MAX_COMPLEX_PATTERNS``)."""

    code = "LIMIT_EXCEEDED"


# -- Redis ----------------------------------------------------------------------------------------


class Unavailable(BrokerError):
    """Redis cannot be reached or timed out. Retrying later can help."""

    code = "UNAVAILABLE"
    temporary = True


class RedisRefused(BrokerError):
    """Redis answered a new connection's set-up with an error (a database index it does not
    have, say): no retry helps, the settings must change."""

    code = "REDIS_REFUSED"


class StorageFull(BrokerError):
    """Redis is at ``maxmemory`` (policy ``noeviction``) and refuses writes: nothing was written.
    Retrying helps once retention or the operator made room."""

    code = "INSUFFICIENT_STORAGE"
    temporary = True


class NotReplicated(Unavailable):
    """The append is in the log but fewer replicas than required confirmed it in time."""


class RateLimited(BrokerError):
    """A key went past one of its limits; ``retry_after`` seconds from now it may go on."""

    code = "RATE_LIMIT_EXCEEDED"

    def __init__(self, message: str, details: Any = None, *, retry_after: int = 1) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


# -- webhook subscriptions ----------------------------------------------------------------------


class SubscriptionNotFound(BrokerError):
    code = "SUBSCRIPTION_NOT_FOUND"

    def __init__(self, store: str, sub_id: str) -> None:
        super().__init__(
            f"subscription '{sub_id}' does not exist in event store '{store}'",
            {"eventStoreName": store, "subscriptionId": sub_id},
        )


class InvalidSubscriptionConfig(BrokerError):
    """A subscription config that cannot work; ``problems`` lists each bad field."""

    code = "INVALID_SUBSCRIPTION_CONFIG"

    def __init__(self, problems: list[dict[str, str]]) -> None:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        super().__init__(summary or "invalid subscription config")
        self.problems = problems


class InvalidSubscriptionBody(InvalidSubscriptionConfig):
    """A subscription body of the wrong shape (unknown field, wrong type, missing field)."""

    code = "VALIDATION_ERROR"
