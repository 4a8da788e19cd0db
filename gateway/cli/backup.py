"""``deltagate export`` and ``deltagate import``: a store's events as one JSON event per line.

``export`` reads through a deployment's API (so the archive and Redis alike, in order) and can be
resumed: given an ``--output`` file that already holds events, it continues after the last one.
``import`` writes to the deployment's Redis directly (like ``keys`` and ``apply``), keeping every
position, id and time, and can be resumed too: what the store already holds is skipped, once found
to be the same events (a store holding other events is refused). Both show progress on stderr.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from .common import (
    DEFAULT_URL,
    ApiKey,
    Url,
    client_for,
    console,
    deployment_settings,
    fail,
    run,
    usage,
    with_redis,
)

PAGE = 1000
BATCH_EVENTS = 500
BATCH_BYTES = 4 * 1024 * 1024


def _progress(total: float | None, what: str) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=False,
        disable=total is None and not sys.stderr.isatty(),
    )


def _last_position(path: Path) -> int | None:
    """The globalPosition of the last complete line of an earlier export (a partial last line,
    from an export that was cut short, is removed)."""
    from broker import codec

    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb+") as out:
        size = out.seek(0, 2)
        tail = b""
        while size > 0 and tail.count(b"\n") < 2:
            step = min(size, 64 * 1024)
            size -= step
            out.seek(size)
            tail = out.read(step) + tail
        if not tail.endswith(b"\n"):
            keep = tail.rfind(b"\n") + 1
            out.truncate(size + keep)
            tail = tail[:keep]
        lines = tail.splitlines()
    if not lines:
        return None
    try:
        return int(codec.loads(lines[-1])["globalPosition"])
    except (ValueError, KeyError, TypeError):
        usage(f"{path} does not end with an exported event; give --from or another --output")


def export(
    store: Annotated[str, typer.Argument(help="Event store")],
    from_position: Annotated[
        int | None, typer.Option("--from", min=1, help="First globalPosition (inclusive)")
    ] = None,
    to_position: Annotated[
        int | None, typer.Option("--to", min=1, help="Last globalPosition (inclusive)")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (continued if it holds events)"),
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Write a store's events, one JSON event per line, oldest first (archive and Redis alike)."""
    from broker import codec

    start = from_position
    held = None if output is None else _last_position(output)
    if start is None and held is not None:
        start = held + 1
    start = start or 1
    err = console(stderr=True)

    async def go() -> int:
        async with client_for(url, api_key) as client:
            head = int((await client.get_store(store))["statistics"]["headPosition"])
            top = head if to_position is None else min(head, to_position)
            out: IO[str] = sys.stdout if output is None else output.open("a", encoding="utf-8")
            written = 0
            try:
                with _progress(max(0, top - start + 1), "exporting") as progress:
                    task = progress.add_task("export", total=max(0, top - start + 1))
                    cursor = start
                    while cursor <= top:
                        page = await client.query(
                            store, from_position=cursor, to_position=top, limit=PAGE
                        )
                        gone = page.get("truncatedBefore")
                        if gone and int(gone) > cursor:
                            if written or held is not None:
                                # A hole in the file: not a backup anyone could restore.
                                _overtaken(err, cursor, int(gone), output, written)
                                raise typer.Exit(1)
                            err.print(
                                f"history before {gone} is gone (retention); exporting what is"
                                " kept",
                                style="yellow",
                            )
                        events = page["events"]
                        if not events:
                            break
                        out.write("".join(codec.dumps_str(e) + "\n" for e in events))
                        written += len(events)
                        cursor = events[-1]["globalPosition"] + 1
                        progress.update(task, completed=cursor - start)
                out.flush()
            finally:
                if out is not sys.stdout:
                    out.close()
            return written

    written = run(go)
    err.print(f"exported {written} event(s) of '{store}'", style="dim")


def _overtaken(err: Any, cursor: int, gone: int, output: Path | None, written: int) -> None:
    where = "the output" if output is None else str(output)
    err.print(
        f"retention deleted events {cursor}..{gone - 1} before they were exported: {where} "
        f"stops at {cursor - 1} (what it holds restores as it is), and the store's history no "
        "longer has what would follow. Export again into a new file for a whole backup of what "
        "the store keeps now; for a store whose retention moves this fast, back up the archive "
        f"(docs/operations.md, Backups). Exported {written} event(s) this time.",
        style="red",
    )


def _batches(
    lines: Iterator[tuple[int, bytes]], after: int
) -> Iterator[tuple[int, list[Any], int, bool]]:
    """(first line number, events, bytes read, held) in batches, each of events all at or below
    ``after`` (held: the store has them already, an interrupted import resumed) or all above."""
    from broker import codec

    batch: list[Any] = []
    first = 0
    size = 0
    held = False
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            event = codec.loads(raw)
        except codec.JSONDecodeError as exc:
            usage(f"line {number}: not JSON ({exc})")
        position = event.get("globalPosition") if isinstance(event, dict) else None
        old = isinstance(position, int) and position <= after
        if batch and old != held:
            yield first, batch, size, held
            batch, size = [], 0
        if not batch:
            first, held = number, old
        batch.append(event)
        size += len(raw)
        if len(batch) >= BATCH_EVENTS or size >= BATCH_BYTES:
            yield first, batch, size, held
            batch, size = [], 0
    if batch:
        yield first, batch, size, held


def import_(
    store: Annotated[str, typer.Argument(help="Event store (created if missing)")],
    input_file: Annotated[
        Path | None, typer.Option("--input", "-i", help="Exported file (default: stdin)")
    ] = None,
) -> None:
    """Restore exported events into a store, keeping positions, ids and times (on the
    deployment's Redis: DELTAGATE_REDIS_URL). Resumable: events the store holds are skipped
    (checked to be the same events: same globalPosition, same eventId)."""
    from broker import (
        Archive,
        Importer,
        StoreAdmin,
        StoreAlreadyExists,
        StoreNotFound,
        eviction_problem,
        valid_store_name,
    )

    if not valid_store_name(store):
        usage(f"invalid store name {store!r}")
    if input_file is not None and not input_file.is_file():
        usage(f"no such file: {input_file}")
    settings = deployment_settings("import")
    total = input_file.stat().st_size if input_file is not None else None

    async def go(client: Any) -> tuple[int, int]:
        problem = await eviction_problem(client)
        if problem is not None:  # (what a pod refuses to write into too)
            fail(f"not importing: {problem}")
        admin = StoreAdmin(client)
        archive = None
        if settings.archive_url is not None:
            archive = Archive(settings.archive_url, seconds=settings.archive_timeout)
        importer = Importer(client, archive)
        made = False
        try:
            uid, head = await importer.head(store)
        except StoreNotFound:
            uid, head = "", 0  # made with the first write: a file refused leaves no store
        source = input_file.open("rb") if input_file is not None else sys.stdin.buffer
        imported = 0
        try:
            with _progress(total, "importing") as progress:
                task = progress.add_task("import", total=total)
                lines = enumerate(source, 1)
                for number, (first, events, size, held) in enumerate(_batches(lines, head)):
                    if number == 0:
                        importer.check_start(head, events[0], first)
                    if held:
                        await importer.check(store, events, first)
                        progress.advance(task, size)
                        continue
                    if not uid:
                        with contextlib.suppress(StoreAlreadyExists):
                            await admin.create(store)
                            made = True
                        uid, head = await importer.head(store)
                    try:
                        head = await importer.restore(store, uid, events, first)
                    except BaseException:
                        if made and not imported:
                            await admin.delete(store)  # (nothing of the file went in)
                        raise
                    imported += len(events)
                    progress.advance(task, size)
        finally:
            if source is not sys.stdin.buffer:
                source.close()
            if archive is not None:
                await archive.close()
        return imported, head

    imported, head = with_redis(settings, go)
    console(stderr=True).print(
        f"imported {imported} event(s) into '{store}' (head {head})", style="dim"
    )
