"""``deltagate stores``: list, show, create and delete event stores over the API."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from .common import (
    DEFAULT_URL,
    ApiKey,
    Command,
    JsonOut,
    Url,
    console,
    group,
    print_json,
    request,
    usage,
)

stores_app = group("List, show, create and delete event stores (no sub-command: list).")


def _stores_table(stores: list[dict[str, Any]]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("name", "events", "streams", "head", "created", "description"):
        table.add_column(
            column, justify="right" if column in ("events", "streams", "head") else "left"
        )
    for store in stores:
        stats = store.get("statistics") or {}
        cells = (
            store.get("name", ""),
            stats.get("totalEvents", ""),
            stats.get("totalStreams", ""),
            stats.get("headPosition", ""),
            store.get("createdAt") or "",
            store.get("description") or "",
        )
        table.add_row(*(Text(str(cell)) for cell in cells))  # Text: never parsed as markup
    return table


def _list_stores(url: str, api_key: str | None, as_json: bool) -> None:
    stores = request(url, api_key, lambda client: client.list_stores())
    if as_json:
        print_json(stores)
    elif not stores:
        console(stderr=True).print("no event stores yet", style="dim")
    else:
        console().print(_stores_table(stores))


@stores_app.callback(invoke_without_command=True)
def stores_root(
    ctx: typer.Context, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: JsonOut = False
) -> None:
    """List, show, create and delete event stores (no sub-command: list)."""
    if ctx.invoked_subcommand is None:
        _list_stores(url, api_key, as_json)


@stores_app.command("list", cls=Command)
def stores_list(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: JsonOut = False) -> None:
    """List the event stores with their statistics."""
    _list_stores(url, api_key, as_json)


@stores_app.command("show", cls=Command)
def stores_show(
    name: Annotated[str, typer.Argument(help="Store name")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Show one store with its statistics."""

    store = request(url, api_key, lambda client: client.get_store(name))
    if as_json:
        print_json(store)
    else:
        console().print(_stores_table([store]))


@stores_app.command("create", cls=Command)
def stores_create(
    name: Annotated[str, typer.Argument(help="3-63 characters of a-z, 0-9, _ and -")],
    description: Annotated[str | None, typer.Option(help="Free text")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Create an event store."""

    store = request(url, api_key, lambda client: client.create_store(name, description))
    if as_json:
        print_json(store)
    else:
        typer.echo(f"created event store '{store.get('name', name)}'")


@stores_app.command("delete", cls=Command)
def stores_delete(
    name: Annotated[str, typer.Argument(help="Store name")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Delete an event store and every event in it."""
    if not yes:
        if not sys.stdin.isatty():
            usage(f"deleting '{name}' removes all its events; repeat with --yes")
        typer.confirm(f"Delete event store '{name}' and all its events?", abort=True)

    body = request(url, api_key, lambda client: client.delete_store(name))
    typer.echo(str(body.get("message") or f"event store '{name}' deleted"))
