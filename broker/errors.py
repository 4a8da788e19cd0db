"""Broker errors: small, carrying protocol data, and saying whether a retry can help.

The gateway maps them to HTTP statuses and WebSocket close codes in exactly one place.
"""

from __future__ import annotations

from typing import Any


class BrokerError(Exception):
    code = "INTERNAL"
    temporary = False

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


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


class Unavailable(BrokerError):
    """Redis cannot be reached or timed out. Retrying later can help."""

    code = "UNAVAILABLE"
    temporary = True
