"""Operations: liveness, readiness and Prometheus metrics (contract section 5)."""

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
    if rt.watch is not None and rt.watch.problem is not None:
        raise ApiError("UNAVAILABLE", rt.watch.problem, headers={"Retry-After": "30"})
    return Response(codec.dumps({"status": "ready"}), media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(
        runtime_of(request).metrics.render(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
