"""``deltagate keys`` (API keys, managed directly in the deployment's Redis) and
``deltagate token`` (a browser token, minted through a pod's REST API)."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")

keys_app = typer.Typer(
    help="Create, list and revoke API keys (in DELTAGATE_REDIS_URL's Redis).", no_args_is_help=True
)

DURATION = re.compile(r"^(\d+)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def parse_duration(text: str) -> int:
    match = DURATION.fullmatch(text.strip())
    if not match:
        raise fail(f"--expires takes a duration like 30d, 12h, 90m or 3600s, not {text!r}", 2)
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def split_csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def with_keystore(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(keystore)`` against the deployment's Redis."""
    from broker import Unavailable, connect
    from broker.apikeys import KeyStore

    from .cli import settings_from

    settings = settings_from()
    if settings.embedded:
        raise fail(
            "API keys live in Redis: set DELTAGATE_REDIS_URL to the deployment's Redis "
            "(the embedded dev server keeps its data in its own process)",
            2,
        )

    async def run() -> T:
        client = connect(settings.redis)
        try:
            return await action(KeyStore(client))
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except Unavailable as exc:
        raise fail(f"cannot reach Redis at DELTAGATE_REDIS_URL: {exc.message}") from None


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="A name to recognise the key by")],
    permissions: Annotated[
        str,
        typer.Option(
            help="Comma-separated: read:events, write:events, connect:websockets, "
            "manage:subscriptions, manage:event_stores, or *"
        ),
    ],
    stores: Annotated[
        str | None, typer.Option(help="Comma-separated stores (default: all)")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d, 12h")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Create a key and print it once (only its hash is kept)."""
    from broker import codec, valid_store_name

    from .auth import PERMISSIONS

    wanted = split_csv(permissions)
    unknown = [p for p in wanted if p not in PERMISSIONS]
    if not wanted or unknown:
        raise fail(f"unknown permission(s) {unknown}; choose from {sorted(PERMISSIONS)}", 2)
    store_list = split_csv(stores) or None
    bad = [s for s in store_list or [] if not valid_store_name(s)]
    if bad:
        raise fail(f"invalid store name(s): {bad}", 2)
    ttl = parse_duration(expires) if expires else None
    if not name.strip():
        raise fail("--name must not be empty", 2)
    key, secret = with_keystore(lambda ks: ks.create(name, wanted, store_list, ttl))
    if json_out:
        info = key.public()
        sys.stdout.write(
            codec.dumps_str(
                {
                    "id": key.id,
                    "key": secret,
                    "name": key.name,
                    "permissions": info["permissions"],
                    "stores": info["stores"],
                    "expiresAt": info["expiresAt"],
                }
            )
            + "\n"
        )
        return
    typer.echo(f"Created key {key.id} ({key.name}). Store it now: it is not shown again.\n")
    typer.echo(secret)


@keys_app.command("list")
def list_keys(json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List keys (never their secrets)."""
    from broker import codec

    keys = with_keystore(lambda ks: ks.list())
    rows = [k.public() for k in keys]
    if json_out:
        sys.stdout.write(codec.dumps_str(rows) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "permissions", "stores", "created", "last used", "expires")
    for r in rows:
        table.add_row(
            r["id"],
            r["name"],
            ",".join(r["permissions"]),
            ",".join(r["stores"]) if r["stores"] else "all",
            r["createdAt"] or "",
            r["lastUsedAt"] or "never",
            r["expiresAt"] or "never",
        )
    Console().print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from keys list)")]) -> None:
    """Revoke a key: every pod refuses it within a second and closes its WebSockets (4001)."""
    if not with_keystore(lambda ks: ks.revoke(key_id)):
        raise fail(f"no key with id {key_id!r}")
    typer.echo(f"Revoked key {key_id}.")


def token(
    store: Annotated[str, typer.Argument(help="Event store the token is for")],
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds (max 3600)")] = 300,
    event_filter: Annotated[
        str | None,
        typer.Option("--filter", help="Comma-separated patterns the token may subscribe to"),
    ] = None,
    stream: Annotated[str | None, typer.Option(help="The one stream it may read")] = None,
    url: Annotated[
        str, typer.Option(envvar="DELTAGATE_URL", help="A pod's base URL")
    ] = "http://127.0.0.1:8787",
    api_key: Annotated[
        str | None, typer.Option(envvar="DELTAGATE_API_KEY", help="A key that may connect")
    ] = None,
) -> None:
    """Mint a short-lived WebSocket token for a browser (prints the token)."""
    import httpx

    body: dict[str, Any] = {"ttlSeconds": ttl}
    if event_filter:
        body["eventFilter"] = split_csv(event_filter)
    if stream:
        body["streamId"] = stream
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/event-stores/{store}/ws-tokens",
            json=body,
            headers=headers,
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach {url}: {exc.__class__.__name__}") from None
    if response.status_code != 201:
        try:
            error = response.json()
            raise fail(f"{error.get('error')}: {error.get('message')}")
        except ValueError:
            raise fail(f"HTTP {response.status_code} from {url}") from None
    typer.echo(response.json()["token"])


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.command("token")(token)
