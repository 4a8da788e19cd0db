"""``deltagate serve``: one gateway pod on this host (uvicorn, with deltagate's batching WebSocket
protocol and the drain of ``gateway.process``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import planned_config, run, settings_from, warn_unknown_variables

BANNER = """
+------------------------------------------------------------------------------+
|  deltagate DEV MODE: embedded in-memory Redis stand-in (fakeredis)           |
|  Single node, nothing is persisted: every event is gone when this stops.     |
|  A restart makes new stores (new epochs): open clients are told (reset) and  |
|  replay the new history from its start.                                      |
|  {auth:<76}|
|  Set DELTAGATE_REDIS_URL=redis://... for a real deployment.                  |
+------------------------------------------------------------------------------+
"""


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind [env DELTAGATE_HOST]")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port [env DELTAGATE_PORT, default 8787]")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Subscriptions config file to apply")] = None,
    auto_create_stores: Annotated[
        bool | None,
        typer.Option(
            "--auto-create-stores/--no-auto-create-stores",
            help="Create a store on first use (default: on only in dev mode)",
        ),
    ] = None,
) -> None:
    """Run one gateway pod (REST + WebSocket) on this host."""
    from .. import logs

    settings = settings_from(
        host=host, port=port, config=config, auto_create_stores=auto_create_stores
    )
    logs.configure(settings.log_level, settings.log_json)
    if settings.config is not None:
        planned_config(settings.config, settings.webhook_targets)  # (as apply checks it)
    warn_unknown_variables()
    # The app's modules only now: settings a pod cannot use are refused without importing them
    # (about half a second of a start).
    from .. import process
    from ..app import create_app, drain
    from ..server import raise_open_files_limit, server_config
    from ..ws.batching import BatchingWebSocketProtocol

    if settings.embedded:
        auth = (
            "Auth is ENABLED (DELTAGATE_AUTH=enabled)."
            if settings.auth_enabled
            else "Auth is OFF: anyone who can reach this port can read and write."
        )
        sys.stderr.write(BANNER.format(auth=auth))
        if settings.auth_enabled and settings.admin_secret is None:
            logging.getLogger("deltagate.server").warning(
                "auth is enabled in dev mode without DELTAGATE_ADMIN_KEY: no key can be made "
                "for the in-memory store (the keys command needs a shared Redis), so every "
                "request will be refused"
            )
    elif not settings.auth_enabled:
        logging.getLogger("deltagate.server").warning(
            "auth is disabled (DELTAGATE_AUTH=disabled) on a deployment with Redis: anyone who "
            "can reach this port can read, write and delete every store"
        )
    open_files = raise_open_files_limit()
    if open_files < settings.limit_concurrency + settings.max_pending_headers + 100:
        logging.getLogger("deltagate.server").warning(
            "the open files limit is below DELTAGATE_LIMIT_CONCURRENCY plus "
            "DELTAGATE_MAX_PENDING_HEADERS: connections may be refused before the limit",
            extra={"open_files_limit": open_files},
        )
    app = create_app(settings)
    # SIGTERM to exit within DELTAGATE_GRACE_PERIOD, whatever the clients do: the drain (the
    # WebSocket closes spread over DELTAGATE_DRAIN_SECONDS, then up to 5 s for the last to
    # flush), then uvicorn's wait for what is still open (a client that stopped reading never
    # finishes its close), then a second for the shutdown itself. (The two waits were each
    # bounded, but not their sum: 35 s of a 30 s grace with a stalled client.)
    drain_deadline = min(settings.drain_seconds + 5, max(1.0, settings.grace_period - 2))
    server = process.Server(
        server_config(
            app,
            settings,
            settings.port,
            ws=BatchingWebSocketProtocol,  # uvicorn's websockets-sansio + batched sends
            ws_max_size=settings.max_ws_message_bytes,
            ws_per_message_deflate=settings.ws_compression,
            timeout_graceful_shutdown=max(1, int(settings.grace_period - drain_deadline - 1)),
            lifespan="on",
            # No access lines (docs/operations.md), and said so to uvicorn: with it on, every
            # request computed the line's client address and quoted path before the logger
            # dropped it (logs.configure holds uvicorn.access at WARNING).
            access_log=False,
        )
    )
    status = run(
        lambda: process.serve(
            server,
            name="gateway",
            drain=lambda: drain(app),
            drain_deadline=drain_deadline,
        )
    )
    raise typer.Exit(status)
