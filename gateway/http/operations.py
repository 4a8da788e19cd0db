"""Operations: liveness, readiness and Prometheus metrics (contract section 5). ``metrics_router``
is mounted only when no ``DELTAGATE_METRICS_PORT`` serves ``/metrics`` elsewhere."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from broker import Unavailable, codec, ping

from ..errors import RETRY_AFTER_SECONDS, ApiError
from ..runtime import runtime_of

READY_TIMEOUT = 1.0

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process and its loop run")
async def healthz() -> Response:
    return Response(codec.dumps({"status": "ok"}), media_type="application/json")


@router.get("/readyz", summary="Readiness: Redis reachable, not draining")
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
    return Response(codec.dumps({"status": "ready"}), media_type="application/json")


metrics_router = APIRouter(tags=["operations"])


@metrics_router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return runtime_of(request).metrics.response()
