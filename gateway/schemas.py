"""Request bodies of the REST API, validated strictly (no coercion of wrong types)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from broker import InvalidFilter, check_name, codec

from .errors import ApiError

M = TypeVar("M", bound=BaseModel)

Version = Annotated[StrictInt, Field(ge=0)] | Literal["any", "no_stream", "stream_exists"]


def _name(value: str, what: str) -> str:
    try:
        return check_name(value, what)
    except InvalidFilter as exc:
        raise ValueError(str(exc)) from None


class EventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: StrictStr = Field(min_length=1, max_length=256)
    data: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    schemaVersion: StrictInt = Field(1, ge=1, le=1_000_000)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return _name(value, "type")


class AppendOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    expectedStreamVersion: Version | None = None
    idempotencyKey: StrictStr | None = Field(None, min_length=1, max_length=255)


class AppendBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    events: list[EventIn] = Field(min_length=1)
    options: AppendOptions | None = None
    expectedStreamVersion: Version | None = None


class CreateStoreBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: StrictStr = Field(pattern=r"^[a-z0-9_-]{3,63}$")
    description: StrictStr | None = Field(None, max_length=1024)
    settings: dict[str, Any] | None = None

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        try:
            codec.dumps(value)  # e.g. nested deeper than the encoder allows
        except codec.JSONEncodeError as exc:
            raise ValueError(f"cannot be stored as JSON: {exc}") from None
        return value


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ttlSeconds: StrictInt = Field(300, ge=1, le=3600)
    eventFilter: StrictStr | list[StrictStr] | None = None
    streamId: StrictStr | None = None


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


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a route that reads its body itself (to bound its size and parse strictly)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
