"""Request bodies of the REST API: read bounded, parsed strictly, validated by pydantic models
(no coercion of wrong types), and JSON responses."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from starlette.responses import Response

from broker import (
    DCB_STREAM,
    MAX_POSITION,
    InvalidFilter,
    NewEvent,
    Query,
    check_name,
    check_tags,
    codec,
)

from ..errors import ApiError, validation_error

M = TypeVar("M", bound=BaseModel)

Version = Annotated[StrictInt, Field(ge=0)] | Literal["any", "no_stream", "stream_exists"]


def _name(value: str, what: str) -> str:
    try:
        return check_name(value, what)
    except InvalidFilter as exc:
        raise ValueError(str(exc)) from None


SchemaVersion = (
    Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    | Annotated[StrictStr, Field(min_length=1, max_length=64)]
)
"""DeltaBase's are strings ("1.0.0"); integers are accepted too. Kept exactly as written."""


class EventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: StrictStr = Field(min_length=1, max_length=256)
    data: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    schemaVersion: SchemaVersion = 1
    tags: list[StrictStr] | None = Field(None, max_length=64)
    """DCB tags: strings without commas, stored with the event and indexed."""

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return _name(value, "type")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return list(check_tags(value))
        except InvalidFilter as exc:
            raise ValueError(str(exc)) from None

    def new(self) -> NewEvent:
        return NewEvent(
            self.type, self.data, self.metadata, self.schemaVersion, tuple(self.tags or ())
        )


class AppendOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    expectedStreamVersion: Version | None = None
    idempotencyKey: StrictStr | None = Field(None, min_length=1, max_length=255)


class AppendBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    events: list[EventIn] = Field(min_length=1)
    options: AppendOptions | None = None
    expectedStreamVersion: Version | None = None


class StreamPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    streamId: StrictStr = Field(min_length=1, max_length=256)
    events: list[EventIn] = Field(min_length=1)
    expectedStreamVersion: Version | None = None


class StreamsAppendBody(BaseModel):
    """An atomic append to several streams (all or nothing, one transactionId)."""

    model_config = ConfigDict(extra="ignore")

    streams: list[StreamPart] = Field(min_length=1, max_length=100)
    idempotencyKey: StrictStr | None = Field(None, min_length=1, max_length=255)


class QueryItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    types: list[StrictStr] | None = None
    tags: list[StrictStr] | None = None


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[QueryItemIn] = Field(min_length=1, max_length=32)

    def parsed(self, where: str) -> Query:
        try:
            return Query.parse(self.model_dump(exclude_none=True), where)
        except InvalidFilter as exc:
            raise ApiError(
                "VALIDATION_ERROR", str(exc), [{"field": where, "message": str(exc)}]
            ) from None


class ConditionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failIfEventsMatch: QueryIn
    after: Annotated[StrictInt, Field(ge=0, le=MAX_POSITION)] | None = None


class DcbAppendBody(BaseModel):
    """DeltaBase's DCB append: events without a stream, with an optional condition."""

    model_config = ConfigDict(extra="ignore")

    events: list[EventIn] = Field(min_length=1)
    condition: ConditionIn | None = None


class DcbQueryBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: QueryIn
    after: Annotated[StrictInt, Field(ge=0, le=MAX_POSITION)] | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=1000)] = 1000


def _storable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    try:
        codec.dumps(value)  # e.g. nested deeper than the encoder allows
    except codec.JSONEncodeError as exc:
        raise ValueError(f"cannot be stored as JSON: {exc}") from None
    return value


StoreSettings = Annotated[dict[str, Any] | None, AfterValidator(_storable)]


class CreateStoreBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: StrictStr = Field(pattern=r"^[a-z0-9_-]{3,63}$")
    description: StrictStr | None = Field(None, max_length=1024)
    settings: StoreSettings = None


class UpdateStoreBody(BaseModel):
    """A JSON merge patch of the store: what it names changes, null removes (``broker.stores``)."""

    model_config = ConfigDict(extra="ignore")

    description: StrictStr | None = Field(None, max_length=1024)
    settings: StoreSettings = None

    def changes(self) -> dict[str, Any]:
        """The fields the body gave (null included), as the patch to apply."""
        return self.model_dump(include=self.model_fields_set)


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ttlSeconds: StrictInt = Field(300, ge=1, le=3600)
    eventFilter: StrictStr | list[StrictStr] | None = None
    streamId: StrictStr | None = None
    match: dict[str, Any] | None = None
    """``{data?, metadata?}``: every subscription made with the token only gets events whose
    data / metadata contain these."""
    query: dict[str, Any] | None = None
    """A DCB query ``{items: [{types?, tags?}]}`` every subscription is held to."""


def parse(model: type[M], value: Any) -> M:
    """Validate a decoded JSON body; bad fields become one VALIDATION_ERROR listing each."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        raise ApiError("VALIDATION_ERROR", summary, details) from None


def body_schema(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """OpenAPI for a route that reads its body itself (to bound its size and parse strictly);
    ``required=False`` for one read with ``read_optional_json``."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status, media_type="application/json")


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refused past ``limit`` bytes and parsed strictly."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(
            "PAYLOAD_TOO_LARGE", f"request body is larger than {limit} bytes", {"limit": limit}
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(
                "PAYLOAD_TOO_LARGE", f"request body is larger than {limit} bytes", {"limit": limit}
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise validation_error("body", "a JSON body is required")
    try:
        return codec.loads(raw)
    except codec.JSONDecodeError as exc:
        raise validation_error("body", f"malformed JSON: {exc}") from None


async def read_optional_json(request: Request, limit: int) -> Any:
    """Like ``read_json``, but a request without a body reads as ``{}``."""
    if request.headers.get("content-length", "0") == "0" and (
        "transfer-encoding" not in request.headers
    ):
        return {}
    return await read_json(request, limit)


def stream_id_of(value: str) -> str:
    """A stream id a stream endpoint may use: a name, and not the reserved DCB stream."""
    try:
        checked = check_name(value, "streamId")
    except InvalidFilter as exc:
        raise validation_error("streamId", str(exc)) from None
    if checked == DCB_STREAM:
        raise validation_error(
            "streamId", f"'{DCB_STREAM}' is reserved for DCB events (POST .../events)"
        )
    return checked
