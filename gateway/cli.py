"""The ``deltagate`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from . import cli_keys

app = typer.Typer(
    help="deltagate: a DeltaBase-compatible event store with live WebSocket streaming.",
    no_args_is_help=True,
    add_completion=False,
)

BANNER = """
+------------------------------------------------------------------------------+
|  deltagate DEV MODE: embedded in-memory Redis stand-in (fakeredis)           |
|  Single node, nothing is persisted: every event is gone when this stops.     |
|  {auth:<76}|
|  Set DELTAGATE_REDIS_URL=redis://... for a real deployment.                  |
+------------------------------------------------------------------------------+
"""


@app.callback()
def _root() -> None:
    """deltagate: a DeltaBase-compatible event store with live WebSocket streaming."""


def settings_from(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from .settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        typer.echo(f"error: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from None


@app.command()
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
    import uvicorn

    from . import logs
    from .app import create_app, drain
    from .server import GatewayServer
    from .wsproto import BatchingWebSocketProtocol

    settings = settings_from(
        host=host, port=port, config=config, auto_create_stores=auto_create_stores
    )
    logs.configure(settings.log_level, settings.log_json)
    if settings.embedded:
        auth = (
            "Auth is ENABLED (DELTAGATE_AUTH=enabled)."
            if settings.auth_enabled
            else "Auth is OFF: anyone who can reach this port can read and write."
        )
        sys.stderr.write(BANNER.format(auth=auth))
    app = create_app(settings)
    server_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws=BatchingWebSocketProtocol,  # uvicorn's websockets-sansio + batched sends
        ws_max_size=settings.max_ws_message_bytes,
        ws_per_message_deflate=settings.ws_compression,
        log_config=None,
        timeout_graceful_shutdown=max(1, int(settings.grace_period - settings.drain_seconds)),
        lifespan="on",
    )
    server = GatewayServer(
        server_config, drain=lambda: drain(app), deadline=settings.drain_seconds + 5
    )
    server.run()


cli_keys.register(app)
from . import cli_client  # noqa: E402  (stores, append, read, tail, demo)

cli_client.register(app)
from . import cli_webhooks  # noqa: E402  (dispatcher, apply)

cli_webhooks.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
