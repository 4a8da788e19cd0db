"""Request bodies of the REST API: read bounded, parsed strictly, validated by pydantic models
(no coercion of wrong types), and JSON responses.

The models are the one statement of the rules (and of the OpenAPI description). The append
bodies, the hot path of a pod, also have a fast reading (``append_request``, ``streams_request``,
``dcb_request``): plain type and range checks of the common shape that either give exactly what
the model would give or step aside, and then the model decides, so every refusal is the model's
own error. It only accepts, never refuses, and tests/gateway/test_append_bodies.py holds it to the
models on generated bodies. Why: pydantic validating ``data: dict[str, Any]`` copies every event's
data, ~3 us an event (a 100-event body took 320 us to validate, 50 us to parse).

Size: ~480 lines: the models and their fast readings sit side by side so a rule changed in
one is seen in the other (the test that holds them together reads both from here).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple, TypeVar

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
    ExpectedVersion,
    InvalidFilter,
    NewEvent,
    Query,
    check_name,
    check_tags,
    codec,
)

from ..errors import ApiError, invalid_request, one_of, validation_details, validation_error

M = TypeVar("M", bound=BaseModel)

Version = Annotated[StrictInt, Field(ge=0)] | Literal["any", "no_stream", "stream_exists"]


def _name(value: str, what: str) -> str:
    try:
        return check_name(value, what)
    except InvalidFilter as exc:
        raise ValueError(str(exc)) from None


MAX_SCHEMA_VERSION = 2**53 - 1
"""The largest integer every JSON reader (JavaScript's included) reads back exactly."""
SchemaVersion = (
    Annotated[StrictInt, Field(ge=-MAX_SCHEMA_VERSION, le=MAX_SCHEMA_VERSION)]
    | Annotated[StrictStr, Field(min_length=1, max_length=64)]
)
"""DeltaBase's are strings ("1.0.0"); integers are accepted too, any that JSON readers keep
exact. Kept exactly as written."""


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


def stream_id_problem(value: str) -> str | None:
    """Why a stream endpoint may not use ``value`` as a stream id (None: it may): a name, and
    not the reserved DCB stream."""
    try:
        check_name(value, "streamId")
    except InvalidFilter as exc:
        return str(exc)
    if value == DCB_STREAM:
        return f"'{DCB_STREAM}' is reserved for DCB events (POST .../events)"
    if "\ufffd" in value:
        # What bytes that are not UTF-8 become when the server decodes the path: %FF and %FE
        # would both name the stream "\ufffd" and share it.
        return "a stream id in a URL path must be UTF-8"
    return None


def stream_id_of(value: str) -> str:
    """A stream id of a URL path a stream endpoint may use (else a 400 naming ``streamId``)."""
    problem = stream_id_problem(value)
    if problem is not None:
        raise validation_error("streamId", problem)
    return value


def _stream_id(value: str) -> str:
    problem = stream_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class StreamPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    streamId: Annotated[StrictStr, Field(min_length=1, max_length=256), AfterValidator(_stream_id)]
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
    idempotencyKey: StrictStr | None = Field(None, min_length=1, max_length=255)
    """As the ``Idempotency-Key`` header (which wins): a repeat within 24 h appends nothing and
    gets the first answer again."""


class DcbQueryBody(BaseModel):
    # Every field selects events: a misspelt ``after`` would read from the start, and a made-up
    # filter (``match``) would answer events it was never applied to.
    model_config = ConfigDict(extra="forbid")

    query: QueryIn
    after: Annotated[StrictInt, Field(ge=0, le=MAX_POSITION)] | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=1000)] = 1000


# -- the fast reading of the append bodies ----------------------------------------------------

VERSIONS = frozenset(("any", "no_stream", "stream_exists"))


class AppendRequest(NamedTuple):
    """An ``AppendBody`` as the append needs it."""

    events: list[NewEvent]
    expected: ExpectedVersion | None
    """``options.expectedStreamVersion``, else the top-level one (None: neither)."""
    idempotency_key: str | None

    @classmethod
    def of(cls, body: AppendBody) -> AppendRequest:
        options = body.options
        return cls(
            [e.new() for e in body.events],
            _one_version(
                body.expectedStreamVersion,
                options.expectedStreamVersion if options is not None else None,
            ),
            options.idempotencyKey if options is not None else None,
        )


def _one_version(top: Any, option: Any) -> Any:
    """The expected version at the top of an append's body or in its ``options`` (None:
    neither); both must agree."""
    return one_of("expectedStreamVersion", top, "options.expectedStreamVersion", option)


class StreamsRequest(NamedTuple):
    """A ``StreamsAppendBody``: (streamId as written, events, expected version) per part."""

    parts: list[tuple[str, list[NewEvent], ExpectedVersion | None]]
    idempotency_key: str | None

    @classmethod
    def of(cls, body: StreamsAppendBody) -> StreamsRequest:
        return cls(
            [
                (p.streamId, [e.new() for e in p.events], p.expectedStreamVersion)
                for p in body.streams
            ],
            body.idempotencyKey,
        )


class DcbRequest(NamedTuple):
    """A ``DcbAppendBody``: its events, and its condition as the model reads it."""

    events: list[NewEvent]
    condition: ConditionIn | None
    idempotency_key: str | None = None

    @classmethod
    def of(cls, body: DcbAppendBody) -> DcbRequest:
        return cls([e.new() for e in body.events], body.condition, body.idempotencyKey)


def _version(value: Any) -> bool:
    """A valid ``Version`` (a JSON null is the caller's business)."""
    kind = type(value)
    return (kind is int and value >= 0) or (kind is str and value in VERSIONS)


def _key(value: Any) -> bool:
    """A valid idempotency key or null."""
    return value is None or (type(value) is str and 1 <= len(value) <= 255)


def _fast_events(events: Any) -> list[NewEvent] | None:
    """``[EventIn(**e).new() for e in events]`` when every event has the common shape; None to
    let the model decide. One pass over the events, and each distinct type checked once (a
    batch's events mostly share a few types): a function call and a type check per event were
    a fifth of this reading's time (py-spy, 100-event appends)."""
    if type(events) is not list or not events:
        return None
    out = []
    checked: set[str] = set()
    for event in events:
        if type(event) is not dict:
            return None
        kind = event.get("type")
        if type(kind) is not str:
            return None
        if kind not in checked:
            if not 1 <= len(kind) <= 256:
                return None
            try:
                check_name(kind, "type")
            except InvalidFilter:
                return None
            checked.add(kind)
        data = event.get("data")
        metadata = event.get("metadata")
        if (data is not None and type(data) is not dict) or (
            metadata is not None and type(metadata) is not dict
        ):
            return None
        version = event.get("schemaVersion", 1)
        if type(version) is int:
            if not -MAX_SCHEMA_VERSION <= version <= MAX_SCHEMA_VERSION:
                return None
        elif type(version) is not str or not 1 <= len(version) <= 64:
            return None
        tags = event.get("tags")
        if tags is None:
            out.append(NewEvent(kind, data, metadata, version))
            continue
        if type(tags) is not list:
            return None
        try:
            out.append(NewEvent(kind, data, metadata, version, check_tags(tags)))
        except InvalidFilter:
            return None
    return out


def fast_append(value: Any) -> AppendRequest | None:
    """``AppendBody``'s reading of a common body, or None (the model then decides)."""
    if type(value) is not dict:
        return None
    events = _fast_events(value.get("events"))
    expected = value.get("expectedStreamVersion")
    if events is None or (expected is not None and not _version(expected)):
        return None
    options = value.get("options")
    if options is None:
        return AppendRequest(events, expected, None)
    if type(options) is not dict:
        return None
    chosen = options.get("expectedStreamVersion")
    key = options.get("idempotencyKey")
    if (chosen is not None and not _version(chosen)) or not _key(key):
        return None
    return AppendRequest(events, _one_version(expected, chosen), key)


def fast_streams(value: Any) -> StreamsRequest | None:
    """``StreamsAppendBody``'s reading of a common body, or None (the model then decides)."""
    if type(value) is not dict:
        return None
    streams = value.get("streams")
    key = value.get("idempotencyKey")
    if type(streams) is not list or not 1 <= len(streams) <= 100 or not _key(key):
        return None
    parts = []
    for part in streams:
        if type(part) is not dict:
            return None
        stream_id = part.get("streamId")
        expected = part.get("expectedStreamVersion")
        if type(stream_id) is not str or stream_id_problem(stream_id) is not None:
            return None  # (the model names each bad field: ``streams.1.streamId``)
        if expected is not None and not _version(expected):
            return None
        events = _fast_events(part.get("events"))
        if events is None:
            return None
        parts.append((stream_id, events, expected))
    return StreamsRequest(parts, key)


def fast_dcb(value: Any) -> DcbRequest | None:
    """``DcbAppendBody``'s reading of a common body, or None (the model then decides). The
    condition is small: the model reads it, and a refusal steps aside for the whole body's."""
    if type(value) is not dict:
        return None
    events = _fast_events(value.get("events"))
    key = value.get("idempotencyKey")
    if events is None or not _key(key):
        return None
    condition = value.get("condition")
    if condition is None:
        return DcbRequest(events, None, key)
    try:
        return DcbRequest(events, ConditionIn.model_validate(condition), key)
    except ValidationError:
        return None


def append_request(value: Any) -> AppendRequest:
    """A decoded append body, read fast when it can be, else by ``AppendBody`` (which refuses
    it with the model's VALIDATION_ERROR, or reads it the same way)."""
    fast = fast_append(value)
    return fast if fast is not None else AppendRequest.of(parse(AppendBody, value))


def streams_request(value: Any) -> StreamsRequest:
    """Like ``append_request``, for ``StreamsAppendBody``."""
    fast = fast_streams(value)
    return fast if fast is not None else StreamsRequest.of(parse(StreamsAppendBody, value))


def dcb_request(value: Any) -> DcbRequest:
    """Like ``append_request``, for ``DcbAppendBody``."""
    fast = fast_dcb(value)
    return fast if fast is not None else DcbRequest.of(parse(DcbAppendBody, value))


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
    # A misspelt narrowing field (``streamID``) would mint a token for the whole store.
    model_config = ConfigDict(extra="forbid")

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
        errors = exc.errors(include_url=False, include_input=False)
        details = validation_details(errors, located=False)
        raise invalid_request(details) from None


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
    if not raw or raw.isspace():  # not raw.strip(): that copies the body
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
