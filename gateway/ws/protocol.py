"""The WebSocket protocol (contract section 2): parsing client messages and building server
messages. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker import (
    Content,
    Filter,
    InvalidFilter,
    StartPosition,
    check_name,
    codec,
    parse_start,
)


class ProtocolError(Exception):
    """A bad client message: answered with an ``error`` message, the connection stays open."""

    def __init__(self, code: str, message: str, subscription_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.subscription_id = subscription_id


@dataclass(frozen=True, slots=True)
class Subscribe:
    filter: Filter
    position: StartPosition
    subscription_id: str | None
    epoch: str | None = None
    """The store's epoch the client's position belongs to (from its ``subscribed``)."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    subscription_id: str | None
    filter: Filter | None


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Refresh:
    """New credentials for the open connection (a fresh browser token)."""

    token: str


Action = Subscribe | Unsubscribe | Ping | Refresh

MAX_TOKEN_CHARS = 8192


def parse_position(value: object) -> StartPosition:
    if value is None:
        return "latest"
    if isinstance(value, str) and value.isdigit() and len(value) <= 16:
        value = int(value)  # a query parameter's text
    try:
        return parse_start(value)
    except ValueError as exc:
        raise ProtocolError("VALIDATION_ERROR", f"position: {exc}") from None


def parse_subscription_id(value: object) -> str | None:
    if value is None:
        return None
    try:
        return check_name(value, "subscriptionId", max_length=128)
    except InvalidFilter as exc:
        raise ProtocolError("VALIDATION_ERROR", str(exc)) from None


def parse_filter(
    patterns: object,
    stream_id: object,
    sub_id: str | None = None,
    *,
    match: object = None,
    query: object = None,
) -> Filter:
    """A subscription's filter: type patterns (or a DCB query's types standing for them), a
    stream, and content conditions (``match: {data?, metadata?}`` containment, ``query``)."""
    try:
        content = Content.parse(match, query) if match is not None or query is not None else None
        return Filter.parse(patterns, stream_id, content)
    except InvalidFilter as exc:
        raise ProtocolError("VALIDATION_ERROR", str(exc), sub_id) from None


def parse(text: str) -> Action:
    """One client message. Raises ProtocolError."""
    try:
        message = codec.loads(text)
    except codec.JSONDecodeError:
        raise ProtocolError("INVALID_MESSAGE", "message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("INVALID_MESSAGE", "message must be a JSON object")
    action = message.get("action")
    if action == "ping":
        return Ping()
    if action == "refresh":
        token = message.get("token")
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise ProtocolError("VALIDATION_ERROR", "refresh needs a token (a string)")
        return Refresh(token)
    if action == "subscribe":
        sub_id = parse_subscription_id(message.get("subscriptionId"))
        if "eventFilter" not in message and "query" not in message:
            raise ProtocolError("VALIDATION_ERROR", "eventFilter (or query) is required", sub_id)
        flt = parse_filter(
            message.get("eventFilter"),
            message.get("streamId"),
            sub_id,
            match=message.get("match"),
            query=message.get("query"),
        )
        try:
            position = parse_position(message.get("position"))
        except ProtocolError as exc:
            exc.subscription_id = sub_id
            raise
        epoch = message.get("epoch")
        if epoch is not None and (not isinstance(epoch, str) or not 0 < len(epoch) <= 128):
            raise ProtocolError(
                "VALIDATION_ERROR", "epoch must be a string (from subscribed)", sub_id
            )
        return Subscribe(flt, position, sub_id, epoch)
    if action == "unsubscribe":
        sub_id = parse_subscription_id(message.get("subscriptionId"))
        by_filter: Filter | None = None
        if sub_id is None:
            if "eventFilter" not in message:
                raise ProtocolError(
                    "VALIDATION_ERROR", "unsubscribe needs a subscriptionId (or an eventFilter)"
                )
            by_filter = parse_filter(message["eventFilter"], message.get("streamId"))
        return Unsubscribe(sub_id, by_filter)
    if isinstance(action, str):
        raise ProtocolError("INVALID_MESSAGE", f"unknown action {action[:64]!r}")
    raise ProtocolError(
        "INVALID_MESSAGE",
        "message needs an 'action': subscribe, unsubscribe, ping or refresh",
    )


CONNECT_FILTER = "{type?, streamId?, data?, metadata?}"


def parse_connect_filter(raw: str) -> Subscribe:
    """``?filter={"type"?, "streamId"?, "data"?, "metadata"?}`` given at connect (DeltaBase's):
    one subscription from latest; ``data``/``metadata`` match by containment."""
    try:
        value = codec.loads(raw)
    except codec.JSONDecodeError:
        raise ProtocolError("VALIDATION_ERROR", f"filter must be JSON: {CONNECT_FILTER}") from None
    if not isinstance(value, dict) or not set(value) <= {"type", "streamId", "data", "metadata"}:
        raise ProtocolError("VALIDATION_ERROR", f"filter must be a JSON object {CONNECT_FILTER}")
    match = {k: value[k] for k in ("data", "metadata") if value.get(k) is not None} or None
    flt = parse_filter(value.get("type", "*"), value.get("streamId"), match=match)
    return Subscribe(flt, "latest", None)


# -- server messages --------------------------------------------------------------------------


def message(kind: str, **fields: Any) -> str:
    return codec.dumps_str({"type": kind, **fields})


def event_prefix(sub_id: str) -> str:
    """Everything of an event frame before the event's own JSON (which is followed by ``}``)."""
    return '{"type":"event","subscriptionId":' + codec.dumps_str(sub_id) + ',"event":'


def marker(kind: str, sub_id: str, position: int) -> str:
    return codec.dumps_str({"type": kind, "subscriptionId": sub_id, "globalPosition": position})


def error(code: str, text: str, sub_id: str | None = None) -> str:
    fields: dict[str, Any] = {"error": code, "message": text}
    if sub_id is not None:
        fields["subscriptionId"] = sub_id
    return message("error", **fields)
