"""``deltagate dispatcher`` (one webhook dispatcher replica) and ``deltagate apply FILE`` (a
config file's stores and subscriptions)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")
log = logging.getLogger("deltagate.dispatcher")


def register(app: typer.Typer) -> None:
    app.command()(dispatcher)
    app.command()(apply)


def dispatcher() -> None:
    """Run one webhook dispatcher replica on the deployment's Redis (DELTAGATE_* settings).
    Serves /metrics, /healthz and /readyz on DELTAGATE_PORT; SIGTERM drains and exits 0."""
    from . import logs
    from .cli import settings_from

    settings = settings_from()
    logs.configure(settings.log_level, settings.log_json)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per delivery
    if settings.embedded:
        typer.echo("error: the dispatcher needs DELTAGATE_REDIS_URL (a shared Redis)", err=True)
        raise typer.Exit(2)
    raise typer.Exit(_run(serve_dispatcher(settings)))


def apply(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: {eventStores: [{name, ...}]}")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON")] = False,
) -> None:
    """Create the stores and webhook subscriptions FILE declares (idempotent: nothing is
    created twice, changed subscriptions are updated in place, nothing is deleted)."""
    from broker import BrokerError, codec, connect

    from .cli import settings_from
    from .config_file import ConfigError, apply_file

    settings = settings_from()
    if settings.embedded:
        typer.echo("error: apply needs DELTAGATE_REDIS_URL (the deployment's Redis)", err=True)
        raise typer.Exit(2)

    async def go() -> Any:
        client = connect(settings.redis)
        try:
            return await apply_file(client, file)
        finally:
            await client.aclose()

    try:
        done = _run(go())
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2) from None
    except BrokerError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    lines = [
        {
            "eventStoreName": d.store,
            "subscriptionId": d.subscription,
            "outcome": d.outcome,
            **({"signingSecret": d.secret} if d.secret else {}),
        }
        for d in done
    ]
    if json_output:
        typer.echo(codec.dumps_str(lines))
        return
    for line in lines:
        what = line["eventStoreName"] + (
            f"/{line['subscriptionId']}" if line["subscriptionId"] else " (store)"
        )
        typer.echo(f"{line['outcome']:<10} {what}")
        if "signingSecret" in line:
            typer.echo(f"           signing secret (shown once): {line['signingSecret']}")


def _run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


async def serve_dispatcher(settings: Any) -> int:
    """Run until SIGTERM/SIGINT, then drain: in-flight deliveries finish, progress is saved,
    leases are released. Returns the exit status."""
    import uvicorn

    from broker import connect
    from broker.dispatcher import Dispatcher

    from .webhook_metrics import DispatcherMetrics

    client = connect(settings.redis)
    try:
        # No wait for Redis here: until it answers, /readyz says so and every retry is logged.
        metrics = DispatcherMetrics()
        engine = Dispatcher(client, settings.dispatcher_options, observer=metrics)
        metrics.observe(engine)
        server = _quiet_server(
            uvicorn.Config(
                status_app(engine, metrics),
                host=settings.host,
                port=settings.port,
                lifespan="off",
                log_config=None,
                access_log=False,
            )
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        gc.freeze()  # what exists now lives as long as the process: keep it out of every GC pass
        running = loop.create_task(engine.run(), name="dispatcher")
        web = loop.create_task(server.serve(), name="dispatcher metrics")
        stopped = loop.create_task(stop.wait())
        log.info(
            "dispatcher started",
            extra={"replica": engine.replica, "port": settings.port},
        )
        await asyncio.wait({running, web, stopped}, return_when=asyncio.FIRST_COMPLETED)
        log.info("dispatcher draining")
        try:
            await asyncio.wait_for(engine.close(), settings.grace_period)
        except TimeoutError:
            log.warning("drain exceeded the grace period; stopping anyway")
        server.should_exit = True
        stopped.cancel()
        await asyncio.wait({running, web, stopped})
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if not running.cancelled() and running.exception() is not None:
            log.error("dispatcher failed", exc_info=running.exception())
            return 1
        log.info("dispatcher stopped")
        return 0
    finally:
        await client.aclose()


def status_app(engine: Any, metrics: Any) -> Any:
    """/metrics, /healthz (the loop runs) and /readyz (Redis answers, not draining)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from broker import codec

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


def _quiet_server(config: Any) -> Any:
    """uvicorn's server without its signal handlers: the dispatcher owns SIGTERM."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer(config)
