"""The client half of the ``deltagate`` command: ``stores``, ``append``, ``read``, ``tail`` and
``demo``, all talking to a running deployment over its public API (``--url``, ``--api-key``).

Errors are one line on stderr: exit code 2 for bad usage (flags, arguments, input), 1 for what
the server or the network said, 130 for Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from .client import DEFAULT_URL, DeltaGateClient, DeltaGateError, Position, ws_base

T = TypeVar("T")

# -- one-line errors ---------------------------------------------------------------------------


# typer >= 0.22 carries its own copy of click: take its UsageError from typer itself.
UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def _usage_exit(exc: Any) -> NoReturn:
    ctx = exc.ctx
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    typer.echo(f"error: {exc.format_message()}{hint}", err=True)
    raise typer.Exit(2)


class _OneLineUsage:
    """Usage errors as one line on stderr (typer's default is a rich panel)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc, no-any-return]
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            _usage_exit(exc)


class OneLineCommand(_OneLineUsage, TyperCommand):
    pass


class OneLineGroup(_OneLineUsage, TyperGroup):
    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            _usage_exit(exc)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def usage(message: str) -> NoReturn:
    fail(message, 2)


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one command's coroutine, turning what can go wrong into one line and an exit code."""
    try:
        return asyncio.run(make())
    except DeltaGateError as exc:
        if exc.code in ("CONNECTION_ERROR", "TIMEOUT"):
            fail(exc.message)
        fail(f"{exc.code}: {exc.message}" if exc.message else exc.code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly. Point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


def client_for(url: str, api_key: str | None) -> DeltaGateClient:
    try:
        ws_base(url)
    except ValueError:
        usage(f"--url must start with http:// or https://, got {url!r}")
    return DeltaGateClient(url, api_key=api_key or None)


def request(url: str, api_key: str | None, call: Callable[[DeltaGateClient], Awaitable[T]]) -> T:
    """One API call from a command, with ``run``'s error handling."""

    async def go() -> T:
        async with client_for(url, api_key) as client:
            return await call(client)

    return run(go)


# -- shared options ----------------------------------------------------------------------------

Url = Annotated[
    str,
    typer.Option(
        "--url", envvar="DELTAGATE_URL", help="The deployment's base URL [env DELTAGATE_URL]"
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="DELTAGATE_API_KEY",
        help="API key [env DELTAGATE_API_KEY]",
        show_default=False,
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON (one document per line)")]


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich exits 1 here; a reader that stopped reading is no error for us (see run()).
        self.quiet = True
        raise BrokenPipeError


def console(stderr: bool = False) -> Console:
    return _Console(stderr=stderr, highlight=False, soft_wrap=True)


# -- event display -----------------------------------------------------------------------------

PALETTE = ["green", "yellow", "magenta", "cyan", "blue", "bright_green", "bright_magenta", "red"]


def type_style(event_type: str) -> str:
    # A stable colour per event type (zlib.crc32: the same across runs, unlike hash()).
    return PALETTE[zlib.crc32(event_type.encode()) % len(PALETTE)]


def event_line(event: dict[str, Any]) -> Any:
    """One event as a rich Text: never parsed as markup, whatever the data holds."""
    from rich.text import Text

    created = str(event.get("createdAt", ""))
    clock = created[11:23] if len(created) >= 23 else created
    data = json.dumps(event.get("data"), separators=(",", ":"), ensure_ascii=False)
    if len(data) > 300:
        data = data[:297] + "..."
    return Text.assemble(
        (f"#{event.get('globalPosition', '?'):<7}", "dim"),
        (f"{clock} ", "dim"),
        (str(event.get("streamId", "")), "cyan"),
        (f"@{event.get('streamPosition', '?')} ", "dim"),
        (str(event.get("type", "")), f"bold {type_style(str(event.get('type', '')))}"),
        " ",
        data,
    )


# -- stores ------------------------------------------------------------------------------------

stores_app = typer.Typer(
    cls=OneLineGroup,
    help="List, show, create and delete event stores (no sub-command: list).",
    add_completion=False,
)


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


@stores_app.command("list", cls=OneLineCommand)
def stores_list(url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: JsonOut = False) -> None:
    """List the event stores with their statistics."""
    _list_stores(url, api_key, as_json)


@stores_app.command("show", cls=OneLineCommand)
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


@stores_app.command("create", cls=OneLineCommand)
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


@stores_app.command("delete", cls=OneLineCommand)
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


# -- append ------------------------------------------------------------------------------------


def _event_from(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        usage(f"{where}: an event must be a JSON object {{type, data?, metadata?}}")
    if not isinstance(value.get("type"), str) or not value["type"]:
        usage(f"{where}: an event needs a non-empty string 'type'")
    return value


def _parse_events(texts: Iterator[tuple[str, str]]) -> list[dict[str, Any]]:
    """Events from JSON texts: each an event object or a list of them."""
    events: list[dict[str, Any]] = []
    for where, text in texts:
        try:
            value = json.loads(text)
        except ValueError as exc:
            usage(f"{where}: invalid JSON ({exc})")
        items = value if isinstance(value, list) else [value]
        for item in items:
            events.append(_event_from(item, where))
    return events


def _json_option(text: str | None, name: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        usage(f"{name}: invalid JSON ({exc})")


def _stdin_lines() -> Iterator[tuple[str, str]]:
    for number, line in enumerate(sys.stdin, 1):
        if line.strip():
            yield f"stdin line {number}", line


async def _append_batches(
    client: DeltaGateClient,
    store: str,
    stream: str,
    events: list[dict[str, Any]],
    batch_size: int,
    expected: int | str | None,
    idempotency_key: str | None,
    advance: Callable[[int], None],
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    batches = [events[i : i + batch_size] for i in range(0, len(events), batch_size)]
    for number, batch in enumerate(batches):
        key = idempotency_key
        if key is not None and len(batches) > 1:
            key = f"{key}-{number}"
        result = await client.append(
            store, stream, batch, expected_version=expected, idempotency_key=key
        )
        if expected is not None:
            # Later batches expect exactly the version this one left: nobody slipped in between.
            expected = result.get("nextExpectedStreamVersion", expected)
        results.append(result)
        advance(len(batch))
    return results


def _expected_version(value: str | None) -> int | str | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    if value in ("no_stream", "stream_exists", "any"):
        return value
    usage("--expected-version must be a number, no_stream, stream_exists or any")


def append(
    store: Annotated[str, typer.Argument(help="Event store")],
    stream: Annotated[str, typer.Argument(help="Stream id")],
    events_json: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[EVENT_JSON]...",
            help="Events as JSON objects {type, data, metadata?} (or lists of them); "
            "none: JSON lines on stdin",
            show_default=False,
        ),
    ] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", "-t", help="Shortcut: one event of this type")
    ] = None,
    data: Annotated[str | None, typer.Option(help="With --type: the event's data (JSON)")] = None,
    metadata: Annotated[str | None, typer.Option(help="With --type: metadata (JSON)")] = None,
    expected_version: Annotated[
        str | None,
        typer.Option(help="Optimistic concurrency: N, no_stream, stream_exists or any"),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat-safe key (batch number appended past one batch)")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=1000, help="Events per request (each is atomic)")
    ] = 1000,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Append events to a stream, from arguments, --type/--data, or JSON lines on stdin.

    Up to --batch-size events are appended atomically; more are sent in several requests.
    """
    if event_type is not None:
        if events_json:
            usage("give either --type/--data or EVENT_JSON arguments, not both")
        parsed = _json_option(data, "--data")
        if parsed is not None and not isinstance(parsed, dict):
            usage("--data must be a JSON object")
        event: dict[str, Any] = {"type": event_type, "data": parsed if parsed is not None else {}}
        meta = _json_option(metadata, "--metadata")
        if meta is not None:
            if not isinstance(meta, dict):
                usage("--metadata must be a JSON object")
            event["metadata"] = meta
        events = [event]
    elif data is not None or metadata is not None:
        usage("--data and --metadata go with --type")
    elif events_json:
        events = _parse_events((f"argument {i}", text) for i, text in enumerate(events_json, 1))
    elif sys.stdin.isatty():
        usage(
            "no events: pass EVENT_JSON arguments, --type T [--data JSON], or JSON lines on stdin"
        )
    else:
        events = _parse_events(_stdin_lines())
    if not events:
        usage("no events to append (stdin was empty)")
    expected = _expected_version(expected_version)

    async def go() -> list[dict[str, Any]]:
        async with client_for(url, api_key) as client:
            err = console(stderr=True)
            if err.is_terminal and len(events) > batch_size:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )

                with Progress(
                    TextColumn("appending"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=err,
                    transient=True,
                ) as progress:
                    task = progress.add_task("append", total=len(events))
                    return await _append_batches(
                        client,
                        store,
                        stream,
                        events,
                        batch_size,
                        expected,
                        idempotency_key,
                        lambda n: progress.advance(task, n),
                    )
            return await _append_batches(
                client, store, stream, events, batch_size, expected, idempotency_key, lambda n: None
            )

    results = run(go)
    if as_json:
        for result in results:
            print_json(result)
        return
    last = results[-1]
    typer.echo(
        f"appended {sum(r.get('eventsWritten', 0) for r in results)} event(s) to "
        f"{store}/{stream}: stream version {last.get('currentStreamVersion')}, "
        f"globalPosition {last.get('globalPosition')}"
    )


# -- read --------------------------------------------------------------------------------------


def read(
    store: Annotated[str, typer.Argument(help="Event store")],
    stream: Annotated[str, typer.Argument(help="Stream id")],
    from_position: Annotated[
        int, typer.Option("--from", min=0, help="First stream position to read")
    ] = 0,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many events (default: all)")
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Print the events of one stream, oldest first."""
    out = console()

    async def go() -> int:
        count = 0
        async with client_for(url, api_key) as client:
            async for event in client.iter_stream(store, stream, from_position=from_position):
                if as_json:
                    print_json(event)
                else:
                    out.print(event_line(event))
                count += 1
                if limit is not None and count >= limit:
                    break
        return count

    count = run(go)
    if count == 0 and not as_json:
        console(stderr=True).print(f"no events in {store}/{stream}", style="dim")


# -- tail --------------------------------------------------------------------------------------


def _position(value: str) -> Position:
    if value in ("earliest", "latest"):
        return value  # type: ignore[return-value]
    if value.isdigit():
        return int(value)
    raise typer.BadParameter("use earliest, latest or a globalPosition N (events after N)")


def tail(
    store: Annotated[str, typer.Argument(help="Event store")],
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            help="Event type pattern ('*' matches anything); repeat for several",
            show_default=False,
        ),
    ] = None,
    stream: Annotated[str | None, typer.Option("--stream", help="Only this stream")] = None,
    start: Annotated[
        str,
        typer.Option("--from", help="earliest, latest, or N (after globalPosition N)"),
    ] = "latest",
    follow: Annotated[
        bool,
        typer.Option("--follow/--no-follow", help="Keep following live, or stop once caught up"),
    ] = True,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Follow a store's events live, like `kubectl logs -f`; resumes across reconnects."""
    try:
        position = _position(start)
    except typer.BadParameter as exc:
        usage(f"--from: {exc.message}")
    event_filter: str | list[str] = (
        (filters[0] if len(filters) == 1 else filters) if filters else "*"
    )
    out = console()
    err = console(stderr=True)
    lost = False

    def on_state(state: str) -> None:
        nonlocal lost
        if state == "reconnecting" and not lost:
            lost = True
            err.print("connection lost; reconnecting to resume", style="yellow")
        elif state == "open" and lost:
            lost = False
            err.print("reconnected; resuming", style="green")

    async def go() -> None:
        async with client_for(url, api_key) as client:
            try:
                await client.get_store(store)  # fail fast: unreachable, unauthorized
            except DeltaGateError as exc:
                if exc.code != "EVENT_STORE_NOT_FOUND":  # the WebSocket may create it (dev)
                    raise
            subscription = client.subscribe(
                event_filter,
                store=store,
                position=position,
                stream_id=stream,
                follow=follow,
                on_state=on_state,
            )
            async with subscription:
                async for event in subscription:
                    if as_json:
                        print_json(event)
                    else:
                        out.print(event_line(event))

    run(go)


# -- demo --------------------------------------------------------------------------------------

demo_app = typer.Typer(
    cls=OneLineGroup,
    help="Generate realistic demo traffic for the /demo/ pages.",
    no_args_is_help=True,
    add_completion=False,
)

PRODUCTS = [
    ("Espresso beans 1kg", 24.90),
    ("Pour-over kettle", 49.00),
    ("Ceramic mug", 12.50),
    ("Burr grinder", 129.00),
    ("Paper filters x100", 6.40),
    ("Milk frother", 34.99),
    ("Travel tumbler", 22.00),
    ("Cold brew jar", 18.75),
]


class OrderBook:
    """The generator's idea of its orders: new ones get placed, pending ones get shipped,
    shipped ones get delivered."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pending: list[str] = []
        self.shipped: list[str] = []

    def next_event(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        roll = rng.random()
        if self.shipped and roll < 0.25:
            order_id = self.shipped.pop(rng.randrange(len(self.shipped)))
            return order_id, {
                "type": "order.delivered",
                "data": {"orderId": order_id, "deliveredAt": _now()},
            }
        if self.pending and roll < 0.55:
            order_id = self.pending.pop(0 if rng.random() < 0.7 else -1)
            self.shipped.append(order_id)
            return order_id, {
                "type": "order.shipped",
                "data": {
                    "orderId": order_id,
                    "carrier": rng.choice(["DHL", "UPS", "FedEx", "PostNL"]),
                    "trackingNumber": f"TRK{rng.randrange(10**9):09d}",
                    "shippedAt": _now(),
                },
            }
        order_id = f"order-{rng.randrange(16**6):06x}"
        chosen = [(i, rng.randint(1, 3)) for i in range(len(PRODUCTS)) if rng.random() < 0.3]
        chosen = chosen or [(rng.randrange(len(PRODUCTS)), 1)]
        items = [
            {"sku": f"SKU-{i:03d}", "name": PRODUCTS[i][0], "price": PRODUCTS[i][1], "quantity": q}
            for i, q in chosen
        ]
        total = round(sum(PRODUCTS[i][1] * q for i, q in chosen), 2)
        self.pending.append(order_id)
        return order_id, {
            "type": "order.placed",
            "data": {
                "orderId": order_id,
                "customerId": f"customer-{rng.randrange(1000, 9999)}",
                "totalAmount": total,
                "items": items,
                "placedAt": _now(),
            },
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _generate(
    url: str,
    api_key: str | None,
    store: str,
    rate: float,
    count: int | None,
    make: Callable[[], tuple[str, dict[str, Any]]],
    quiet: bool,
) -> None:
    out = console()
    async with client_for(url, api_key) as client:
        await client.ensure_store(store)
        if not quiet:
            console(stderr=True).print(
                f"appending to '{store}' at {rate:g} events/s; Ctrl-C to stop", style="dim"
            )
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        sent = 0
        while count is None or sent < count:
            stream, event = make()
            result = await client.append(store, stream, [event])
            sent += 1
            if not quiet:
                out.print(event_line({**event, "streamId": stream, **_positions(result)}))
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))


def _positions(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "globalPosition": result.get("globalPosition"),
        "streamPosition": (result.get("currentStreamVersion") or 1) - 1,
        "createdAt": _now(),
    }


Rate = Annotated[float, typer.Option(min=0.01, max=1000, help="Events per second")]
Count = Annotated[
    int | None, typer.Option(min=1, help="Stop after this many events (default: run until Ctrl-C)")
]
Seed = Annotated[int | None, typer.Option(help="Random seed, for a repeatable stream")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing per event")]


@demo_app.command("orders", cls=OneLineCommand)
def demo_orders(
    store: Annotated[str, typer.Option(help="Event store")] = "orders",
    rate: Rate = 2.0,
    count: Count = None,
    seed: Seed = None,
    quiet: Quiet = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Orders being placed, shipped and delivered, for /demo/orders."""
    book = OrderBook(random.Random(seed))
    run(lambda: _generate(url, api_key, store, rate, count, book.next_event, quiet))


@demo_app.command("balance", cls=OneLineCommand)
def demo_balance(
    account: Annotated[str, typer.Option(help="Account (stream) id")] = "account-123",
    store: Annotated[str, typer.Option(help="Event store")] = "banking",
    rate: Rate = 1.0,
    count: Count = None,
    seed: Seed = None,
    quiet: Quiet = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Deposits and withdrawals on one account, for /demo/balance."""
    rng = random.Random(seed)

    def next_event() -> tuple[str, dict[str, Any]]:
        kind = "money.deposited" if rng.random() < 0.6 else "money.withdrawn"
        amount = round(rng.uniform(5, 250), 2)
        return account, {"type": kind, "data": {"amount": amount, "currency": "USD"}}

    run(lambda: _generate(url, api_key, store, rate, count, next_event, quiet))


# -- registration ------------------------------------------------------------------------------

COMMANDS: list[tuple[str, Callable[..., Any]]] = [
    ("append", append),
    ("read", read),
    ("tail", tail),
]


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``deltagate`` command."""
    app.add_typer(stores_app, name="stores")
    for name, function in COMMANDS:
        app.command(name, cls=OneLineCommand)(function)
    app.add_typer(demo_app, name="demo")


__all__ = ["register"]
