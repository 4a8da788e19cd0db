"""``deltagate append``, ``read`` and ``tail``: events over the API, printed one per line (or
as JSON lines with ``--json``)."""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

import typer
from deltagate_client import DeltaGateClient, DeltaGateError, Position

from .common import (
    DEFAULT_URL,
    ApiKey,
    JsonOut,
    Url,
    client_for,
    console,
    print_json,
    run,
    usage,
)

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
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            "use earliest, latest, a globalPosition N (events after N) or an ISO 8601 time "
            "(events created at or after it)"
        ) from None
    return {"time": value}


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
        typer.Option(
            "--from",
            help="earliest, latest, N (after globalPosition N), or an ISO 8601 time "
            "(e.g. 2026-12-01T10:00:00Z: events created at or after it)",
        ),
    ] = "latest",
    follow: Annotated[
        bool,
        typer.Option("--follow/--no-follow", help="Keep following live, or stop once caught up"),
    ] = True,
    sse: Annotated[
        bool,
        typer.Option(
            "--sse", help="Read Server-Sent Events instead of a WebSocket (e.g. behind a proxy)"
        ),
    ] = False,
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

    def on_notice(notice: dict[str, Any]) -> None:
        if notice["type"] == "reset":
            err.print(
                f"the store's history started again ({notice.get('reason')}): following it "
                "from its first event",
                style="yellow",
            )
        else:
            err.print(
                f"events {notice.get('requestedPosition', 0) + 1}.."
                f"{notice.get('earliestPosition', 1) - 1} are gone (retention); going on",
                style="yellow",
            )

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
                on_notice=on_notice,
                transport="sse" if sse else "websocket",
            )
            async with subscription:
                async for event in subscription:
                    if as_json:
                        print_json(event)
                    else:
                        out.print(event_line(event))

    run(go)
