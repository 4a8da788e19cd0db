"""``deltagate dispatcher``: one webhook dispatcher replica (``broker.Dispatcher``) with its status
server: ``/metrics``, ``/healthz`` (the loop runs) and ``/readyz`` (Redis answers, not draining)
on ``DELTAGATE_DISPATCHER_PORT`` (default 8788, never the gateway's port). With
``DELTAGATE_ARCHIVE_URL`` it reads the archive as the pod does. Signals and draining
follow ``gateway.process``: SIGTERM lets in-flight deliveries finish, saves progress, releases the
leases and exits 0."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker import Archive, Dispatcher, RedisRefused, codec, connect, first_contact

from .. import process
from ..settings import Settings
from .metrics import DispatcherMetrics

log = logging.getLogger("deltagate.dispatcher")


async def serve_dispatcher(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT, then drain. Returns the exit status."""
    client = connect(settings.redis)
    # The pod's archive: catch-up reads what retention moved out of Redis (one LogReader).
    archive = (
        None
        if settings.archive_url is None
        else Archive(settings.archive_url, seconds=settings.archive_timeout)
    )
    try:
        # One try of Redis, no wait: until it answers, /readyz says so and every retry is
        # logged. One that refuses the connection (a DB index it lacks) fails the start.
        try:
            await first_contact(client, attempts=1)
        except RedisRefused as exc:
            log.error(f"the dispatcher could not start: {exc}")
            return process.START_FAILED
        metrics = DispatcherMetrics()
        engine = Dispatcher(client, settings.dispatcher_options, observer=metrics, archive=archive)
        metrics.observe(engine)
        server = process.Server(
            uvicorn.Config(
                status_app(engine, metrics),
                host=settings.host,
                port=settings.dispatcher_port,
                lifespan="off",
                log_config=None,
                access_log=False,
            )
        )
        process.settle_gc()
        log.info(
            "dispatcher started",
            extra={"replica": engine.replica, "port": settings.dispatcher_port},
        )
        status = await process.serve(
            server,
            name="dispatcher",
            main=engine.run(),
            drain=engine.close,
            drain_deadline=settings.grace_period,
        )
        log.info("dispatcher stopped", extra={"status": status})
        return status
    finally:
        if archive is not None:
            await archive.close()
        await client.aclose()


def status_app(engine: Any, metrics: Any) -> Starlette:
    def json(body: dict[str, str], status: int = 200) -> Response:
        return Response(codec.dumps(body), status, media_type="application/json")

    async def metrics_route(_: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(_: Request) -> Response:
        return json({"status": "ok"})

    async def readyz(_: Request) -> Response:
        if engine.draining:
            return json({"error": "UNAVAILABLE", "message": "draining"}, 503)
        if not engine.healthy:
            return json({"error": "UNAVAILABLE", "message": "Redis is not reachable"}, 503)
        return json({"status": "ready"})

    return Starlette(
        routes=[
            Route("/metrics", metrics_route),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )
