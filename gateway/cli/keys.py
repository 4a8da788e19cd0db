"""``deltagate keys`` (API keys, managed directly in the deployment's Redis) and
``deltagate token`` (a browser token, minted through a pod's API)."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from .common import (
    DEFAULT_URL,
    ApiKey,
    Url,
    deployment_settings,
    fail,
    group,
    print_json,
    request,
    usage,
    with_redis,
)

keys_app = group(
    "Create, list and revoke API keys (in DELTAGATE_REDIS_URL's Redis).", no_args_is_help=True
)

DURATION = re.compile(r"^(\d+)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    from broker import MAX_KEY_TTL_SECONDS

    match = DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        # (a lifetime of nothing would be a key that never works, or, read as "unset", one that
        # never expires: neither is what was asked for)
        usage(f"--expires takes a duration like 30d, 12h, 90m or 3600s (more than 0), not {text!r}")
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds > MAX_KEY_TTL_SECONDS:
        usage(f"--expires is at most {MAX_KEY_TTL_SECONDS // 86400}d (100 years), not {text!r}")
    return seconds


def split_csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def with_keystore(action: Any) -> Any:
    """Run ``action(keystore)`` against the deployment's Redis."""
    from broker import KeyStore

    settings = deployment_settings("API keys")
    return with_redis(settings, lambda client: action(KeyStore(client)))


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
        str | None,
        typer.Option(help="Comma-separated stores (omitted: every store; never empty)"),
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d, 12h")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Create a key and print it once (only its hash is kept)."""
    from broker import valid_store_name

    from ..auth import PERMISSIONS

    wanted = split_csv(permissions)
    unknown = [p for p in wanted if p not in PERMISSIONS]
    if not wanted or unknown:
        usage(f"unknown permission(s) {unknown}; choose from {sorted(PERMISSIONS)}")
    store_list = None
    if stores is not None:
        # An empty list must not widen to every store: that is what leaving --stores out means.
        store_list = split_csv(stores)
        if not store_list:
            usage("--stores names no store; omit --stores for a key on every store")
    bad = [s for s in store_list or [] if not valid_store_name(s)]
    if bad:
        usage(f"invalid store name(s): {bad}")
    ttl = None if expires is None else parse_duration(expires)
    if not name.strip():
        usage("--name must not be empty")
    key, secret = with_keystore(lambda ks: ks.create(name, wanted, store_list, ttl))
    if json_out:
        info = key.public()
        print_json(
            {
                "id": key.id,
                "key": secret,
                "name": key.name,
                "permissions": info["permissions"],
                "stores": info["stores"],
                "expiresAt": info["expiresAt"],
            }
        )
        return
    typer.echo(f"Created key {key.id} ({key.name}). Store it now: it is not shown again.\n")
    typer.echo(secret)


@keys_app.command("list")
def list_keys(json_out: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List keys (never their secrets)."""
    keys = with_keystore(lambda ks: ks.list())
    rows = [k.public() for k in keys]
    if json_out:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Column, Table

    # The id whole, however narrow the output (80 columns when not a terminal): it is what
    # `keys revoke` takes, and a table that shortened it to "9d5ea68d5…" gave none to copy.
    widest = max((len(r["id"]) for r in rows), default=2)
    table = Table(
        Column("id", no_wrap=True, min_width=widest),
        "name",
        "permissions",
        "stores",
        "created",
        "last used",
        "expires",
    )
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
        fail(f"no key with id {key_id!r}")
    typer.echo(f"Revoked key {key_id}.")


def token(
    store: Annotated[str, typer.Argument(help="Event store the token is for")],
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds (max 3600)")] = 300,
    event_filter: Annotated[
        str | None,
        typer.Option("--filter", help="Comma-separated patterns the token may subscribe to"),
    ] = None,
    stream: Annotated[str | None, typer.Option(help="The one stream it may read")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Mint a short-lived WebSocket token for a browser (prints the token)."""
    patterns = split_csv(event_filter) or None
    minted = request(
        url,
        api_key,
        lambda client: client.mint_token(
            store, ttl_seconds=ttl, event_filter=patterns, stream_id=stream
        ),
    )
    typer.echo(minted["token"])
