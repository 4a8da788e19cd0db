"""Operations: liveness, readiness and Prometheus metrics (contract section 5). ``metrics_router``
is mounted only when no ``DELTAGATE_METRICS_PORT`` serves ``/metrics`` elsewhere."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from broker import Unavailable, codec, ping

from ..errors import RETRY_AFTER_SECONDS, ApiError
from ..openapi import ERRORS
from ..runtime import runtime_of
from .answers import Status, answers

READY_TIMEOUT = 1.0

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Liveness: the process and its loop run",
    responses=answers(200, Status, "Alive"),
)
async def healthz() -> Response:
    return Response(codec.dumps({"status": "ok"}), media_type="application/json")


@router.get(
    "/readyz",
    summary="Readiness: Redis reachable, not draining",
    responses={**answers(200, Status, "Ready"), 503: ERRORS[503]},
)
async def readyz(request: Request) -> Response:
    rt = runtime_of(request)
    if rt.draining:
        raise ApiError("UNAVAILABLE", "this pod is draining", headers={"Retry-After": "1"})
    try:
        await ping(rt.redis, READY_TIMEOUT)
    except Unavailable:
        raise ApiError(
            "UNAVAILABLE", "Redis is not reachable", headers={"Retry-After": RETRY_AFTER_SECONDS}
        ) from None
    rt.refuse_evicting_redis()  # (not ready: the words a write gets then)
    return Response(codec.dumps({"status": "ready"}), media_type="application/json")


metrics_router = APIRouter(tags=["operations"])


@metrics_router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,  # what the route answers: Prometheus' text format
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    return runtime_of(request).metrics.response()
