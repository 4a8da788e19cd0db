"""What the REST API answers, as pydantic models for the OpenAPI description only: routes encode
their answers themselves (``codec``, without building these), so each route names its model in
``responses=`` and tests/e2e/test_openapi.py holds every real answer to it (schemathesis)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class EventOut(BaseModel):
    streamId: str
    streamPosition: int = Field(ge=0)
    globalPosition: int = Field(ge=1)
    eventId: str
    type: str
    data: dict[str, Any] | None
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    schemaVersion: int | str
    transactionId: str
    createdAt: str


class Statistics(BaseModel):
    totalStreams: int
    totalEvents: int
    headPosition: int
    hotEvents: int
    archivedEvents: int
    oldestPosition: int | None
    databaseSizeBytes: int
    oldestEventTimestamp: str | None
    newestEventTimestamp: str | None


class StoreOut(BaseModel):
    name: str
    eventStoreName: str
    eventStoreId: str
    epoch: str
    description: str | None
    settings: dict[str, Any] | None
    createdAt: str
    created: str
    statistics: Statistics


class StoreList(BaseModel):
    eventStores: list[StoreOut]
    totalCount: int


class Deleted(BaseModel):
    success: bool
    message: str


class StreamAppended(BaseModel):
    """What was appended to one stream (one part of a multi-stream append)."""

    streamId: str
    nextExpectedStreamVersion: int
    currentStreamVersion: int
    eventsWritten: int
    eventsAppended: int
    createdNewStream: bool
    globalPosition: int


class Appended(StreamAppended):
    """A single-stream append's answer: the stream's part, the transaction and the events."""

    success: bool
    transactionId: str
    events: list[EventOut]


class StreamsAppended(BaseModel):
    success: bool
    transactionId: str
    eventsWritten: int
    eventsAppended: int
    globalPosition: int
    lastPosition: int
    """The last event's globalPosition (DeltaBase's name for ``globalPosition`` here)."""
    streams: list[StreamAppended]
    events: list[EventOut]


class DcbAppended(BaseModel):
    success: bool
    lastPosition: int
    firstPosition: int
    eventsAppended: int
    transactionId: str
    events: list[EventOut]


class DcbConflict(BaseModel):
    """DeltaBase's answer when a DCB append's condition matched (status 409)."""

    error: str
    message: str
    details: str
    conflictingPositions: list[int]
    afterPosition: int
    """The condition's ``after``; 0 when it gave none (from the start)."""


class DcbQueryAnswer(BaseModel):
    events: list[EventOut]
    lastPosition: int
    truncatedBefore: int | None = None
    """The oldest position kept, when history after ``after`` is gone (retention)."""


class StreamRead(BaseModel):
    events: list[EventOut]
    currentStreamVersion: int
    truncatedBefore: int | None = None


class Pagination(BaseModel):
    limit: int
    offset: int
    hasMore: bool
    total: int | None = None


class EventsPage(BaseModel):
    events: list[EventOut]
    pagination: Pagination
    truncatedBefore: int | None = None


class StreamEventsPage(BaseModel):
    events: list[EventOut]
    currentStreamVersion: int
    pagination: Pagination
    truncatedBefore: int | None = None


class StreamOut(BaseModel):
    streamId: str
    streamPosition: int
    streamType: str | None
    createdAt: str | None
    updatedAt: str | None


class StreamsPage(BaseModel):
    streams: list[StreamOut]
    pagination: Pagination


class Token(BaseModel):
    token: str
    expiresAt: str


class Status(BaseModel):
    status: str


def answers(status: int, model: type[BaseModel], description: str) -> dict[int | str, Any]:
    """A route's ``responses=`` for its success answer."""
    return {status: {"model": model, "description": description}}
