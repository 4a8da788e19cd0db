"""A subscription request as the REST API and config files receive it, in either form of the
contract: the SDK's ``{eventFilter, subscriberId?, subscriber: {type: "webhook", config: {...}},
position?}`` or the seed config file's ``{id?, eventFilter, subscriberType: "webhook",
webhook: {...}, position?}``.

One table (``SDK_FORM``, ``CONFIG_FORM``) states each field's shape; ``parse`` checks a body
against it (unknown fields, wrong types and missing fields: ``InvalidSubscriptionBody``, a
VALIDATION_ERROR) and hands the values to ``config.WebhookConfig.build`` (values that cannot work:
``InvalidSubscriptionConfig``); ``schema`` turns the same table into the OpenAPI description.
Nothing else validates a subscription."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidSubscriptionBody, InvalidSubscriptionConfig
from ..types import StartPosition
from .config import WebhookConfig, check_id, check_position, check_secret
from .targets import TargetPolicy


@dataclass(frozen=True, slots=True)
class Spec:
    """One field: its kind (a name below, or a nested table of fields)."""

    kind: str | dict[str, Spec]
    required: bool = False
    description: str | None = None


KINDS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "object": {"type": "object"},
    "patterns": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "position": {
        "anyOf": [
            {"enum": ["latest", "earliest"]},
            {"type": "integer"},
            {
                "type": "object",
                "properties": {"time": {"type": "string", "format": "date-time"}},
                "required": ["time"],
                "additionalProperties": False,
            },
        ]
    },
    "strategy": {"enum": ["exponential", "linear", "fixed"]},
}

RETRY_POLICY: dict[str, Spec] = {
    "maxAttempts": Spec("integer", description="Attempts in all, the first included (1-100)"),
    "maxRetries": Spec("integer", description="Retries after the first attempt (older name)"),
    "backoffSeconds": Spec("number", description="The first retry's delay, in seconds"),
    "backoffMinutes": Spec("number", description="The first retry's delay, in minutes"),
    "initialDelayMs": Spec("number", description="The first retry's delay, in milliseconds"),
    "strategy": Spec("strategy", description="How delays grow (default exponential)"),
    "multiplier": Spec("number", description="Growth per retry, exponential (default 2)"),
    "backoffMultiplier": Spec("number", description="multiplier (older name)"),
    "maxDelayMs": Spec("number", description="No delay is longer (default one day)"),
    "jitterPercent": Spec("number", description="Delays vary this much; default full jitter"),
}
WEBHOOK: dict[str, Spec] = {
    "url": Spec("string", required=True),
    "headers": Spec("headers"),
    "timeout": Spec("number", description="Milliseconds per request, 1 to 300000"),
    "timeoutMs": Spec("number", description="timeout (DeltaBase's infrastructure-as-code name)"),
    "retryPolicy": Spec(RETRY_POLICY),
    "signingSecret": Spec("string", description="Your own whsec_ secret; else one is generated"),
}
FILTER: dict[str, Spec] = {
    "eventFilter": Spec("patterns", description="Required unless a query gives the types"),
    "streamId": Spec("string"),
    "match": Spec("object", description="{data?, metadata?}: events containing them"),
    "query": Spec("object", description="A DCB query {items: [{types?, tags?}]}"),
    "subscriberId": Spec("string"),
    "position": Spec("position"),
    "initialPosition": Spec("position", description="position (DeltaBase's name)"),
}
SDK_FORM: dict[str, Spec] = {
    **FILTER,
    "subscriber": Spec(
        {"type": Spec("string", required=True), "config": Spec(WEBHOOK, True)}, True
    ),
}
CONFIG_FORM: dict[str, Spec] = {
    "id": Spec("string"),
    **FILTER,
    "subscriberType": Spec("string", required=True),
    "webhook": Spec(WEBHOOK, required=True),
}


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """A validated subscription request, whichever form it came in."""

    config: WebhookConfig
    sub_id: str | None
    position: StartPosition
    secret: str | None


def parse(
    value: Any, *, targets: TargetPolicy, config_form_only: bool = False
) -> SubscriptionRequest:
    """Validate one subscription body (the SDK form only where ``subscriber`` is given and
    ``config_form_only`` is false); ``targets`` says which addresses its URL may name. Raises
    InvalidSubscriptionBody or InvalidSubscriptionConfig listing every problem."""
    if not isinstance(value, dict):
        raise InvalidSubscriptionBody([{"field": "body", "message": "must be an object"}])
    sdk = "subscriber" in value and not config_form_only
    problems: list[dict[str, str]] = []
    body = _check(value, SDK_FORM if sdk else CONFIG_FORM, "", problems)
    named = {p["field"] for p in problems}
    if "eventFilter" not in body and "query" not in body and not named & {"eventFilter", "query"}:
        problems.append({"field": "eventFilter", "message": "is required (or a query)"})
    if problems:
        raise InvalidSubscriptionBody(problems)
    if sdk:
        kind, webhook = body["subscriber"]["type"], body["subscriber"]["config"]
        prefix, type_field, sub_id = "subscriber.config.", "subscriber.type", None
    else:
        kind, webhook = body["subscriberType"], body["webhook"]
        prefix, type_field, sub_id = "webhook.", "subscriberType", body.get("id")
    if kind != "webhook":
        raise InvalidSubscriptionConfig(
            [{"field": type_field, "message": "only 'webhook' subscribers are supported"}]
        )
    config = WebhookConfig.build(
        event_filter=body.get("eventFilter"),
        stream_id=body.get("streamId"),
        url=webhook["url"],
        headers=webhook.get("headers"),
        timeout_ms=_one_of(webhook, "timeout", "timeoutMs", prefix),
        retry_policy=webhook.get("retryPolicy"),
        match=body.get("match"),
        query=body.get("query"),
        subscriber_id=body.get("subscriberId"),
        prefix=prefix,
        targets=targets,
    )
    position = _one_of(body, "position", "initialPosition", "")
    secret = webhook.get("signingSecret")
    return SubscriptionRequest(
        config,
        None if sub_id is None else check_id(sub_id),
        "latest" if position is None else check_position(position),
        None if secret is None else check_secret(secret),
    )


def _one_of(body: dict[str, Any], name: str, alias: str, prefix: str) -> Any:
    """A field that has a second name: either, or both if they agree."""
    value, other = body.get(name), body.get(alias)
    if value is not None and other is not None and value != other:
        raise InvalidSubscriptionConfig(
            [{"field": prefix + alias, "message": f"differs from {name}; give one of them"}]
        )
    return other if value is None else value


def _check(
    value: dict[str, Any], fields: dict[str, Spec], at: str, problems: list[dict[str, str]]
) -> dict[str, Any]:
    """The fields of ``value`` that are given and not null, each checked against its spec."""
    out: dict[str, Any] = {}
    for name in value:
        if name not in fields:
            problems.append({"field": at + name, "message": "is not a known field"})
    for name, spec in fields.items():
        item = value.get(name)
        where = at + name
        if item is None:
            if spec.required:
                problems.append({"field": where, "message": "is required"})
            continue
        if isinstance(spec.kind, dict):
            if not isinstance(item, dict):
                problems.append({"field": where, "message": "must be an object"})
            else:
                out[name] = _check(item, spec.kind, where + ".", problems)
        elif _fits(spec.kind, item):
            out[name] = item
        else:
            problems.append({"field": where, "message": _EXPECTED[spec.kind]})
    return out


_EXPECTED = {
    "string": "must be a string",
    "integer": "must be an integer",
    "number": "must be a number",
    "patterns": "must be a pattern or a list of patterns",
    "headers": "must be an object of header names to string values",
    "position": "must be 'latest', 'earliest', a globalPosition or {\"time\": ...}",
    "object": "must be an object",
    "strategy": "must be 'exponential', 'linear' or 'fixed'",
}


def _fits(kind: str, value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return number
    if kind == "object":
        return isinstance(value, dict)
    if kind == "strategy":
        return value in ("exponential", "linear", "fixed")
    if kind == "patterns":
        return isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
    if kind == "headers":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if kind == "position":
        return (
            value in ("latest", "earliest")
            or (isinstance(value, int) and number)
            or isinstance(value, dict)  # {"time": ...}, checked by config.check_position
        )
    raise AssertionError(kind)


def schema(fields: dict[str, Spec], title: str | None = None) -> dict[str, Any]:
    """The JSON schema (for OpenAPI) of a table of fields."""
    properties: dict[str, Any] = {}
    for name, spec in fields.items():
        shape = schema(spec.kind) if isinstance(spec.kind, dict) else dict(KINDS[spec.kind])
        if spec.description:
            shape["description"] = spec.description
        properties[name] = shape
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    required = [name for name, spec in fields.items() if spec.required]
    if required:
        out["required"] = required
    if title:
        out["title"] = title
    return out


REQUEST_SCHEMA: dict[str, Any] = {
    "oneOf": [schema(SDK_FORM, "SDK form"), schema(CONFIG_FORM, "Config form")]
}
"""Both forms of the body, for the OpenAPI description of ``POST .../subscribe``."""
