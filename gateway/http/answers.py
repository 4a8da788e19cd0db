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
    schemaVersion: int
    transactionId: str
    createdAt: str


class Statistics(BaseModel):
    totalStreams: int
    totalEvents: int
    headPosition: int


class StoreOut(BaseModel):
    name: str
    description: str | None
    settings: dict[str, Any] | None
    createdAt: str
    statistics: Statistics


class StoreList(BaseModel):
    eventStores: list[StoreOut]
    totalCount: int


class Deleted(BaseModel):
    success: bool
    message: str


class Appended(BaseModel):
    success: bool
    streamId: str
    nextExpectedStreamVersion: int
    currentStreamVersion: int
    eventsWritten: int
    globalPosition: int
    transactionId: str


class StreamRead(BaseModel):
    events: list[EventOut]
    currentStreamVersion: int


class Pagination(BaseModel):
    limit: int
    offset: int
    hasMore: bool
    total: int | None = None


class EventsPage(BaseModel):
    events: list[EventOut]
    pagination: Pagination


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
