"""Short-lived WebSocket tokens for browsers (contract section 3)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from broker import Content, Filter, InvalidFilter, codec

from ..auth import Permission, check, require
from ..errors import validation_error
from ..runtime import RuntimeDep
from .answers import Token, answers
from .bodies import TokenBody, body_schema, json_response, parse, read_optional_json
from .params import DECLARED_ONLY

router = APIRouter(tags=["event stores"], dependencies=[DECLARED_ONLY])
"""Refuses the query parameters it does not declare (``params.DECLARED_ONLY``): only ``apiKey``."""


@router.post(
    "/event-stores/{store}/ws-tokens",
    status_code=201,
    openapi_extra=body_schema(TokenBody, required=False),  # no body: a 5-minute token
    summary="Mint a short-lived WebSocket token for a browser",
    responses=answers(201, Token, "The token and when it expires"),
)
async def mint_token(store: str, request: Request, rt: RuntimeDep) -> Response:
    principal = await require(request, Permission.CONNECT, store)
    check(principal, Permission.READ, store)
    body = parse(TokenBody, await read_optional_json(request, rt.settings.max_body_bytes))
    patterns: list[str] | None = None
    if body.eventFilter is not None or body.streamId is not None:
        try:
            flt = Filter.parse(
                body.eventFilter if body.eventFilter is not None else "*", body.streamId
            )
        except InvalidFilter as exc:
            raise validation_error("eventFilter", str(exc)) from None
        patterns = list(flt.patterns)
    content = None
    if body.match is not None or body.query is not None:
        try:
            content = Content.parse(body.match, body.query)
        except InvalidFilter as exc:
            field = "query" if "query" in str(exc) else "match"
            raise validation_error(field, str(exc)) from None
    await rt.log.head(store)  # unknown store -> 404
    token, expires = rt.auth.tokens.mint(
        key_id=principal.key_id or "admin",
        store=store,
        ttl=body.ttlSeconds,
        patterns=patterns,
        stream_id=body.streamId,
        content=content,
    )
    expires_at = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
    return json_response(codec.dumps({"token": token, "expiresAt": expires_at}), 201)
