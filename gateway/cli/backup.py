"""``deltagate export`` and ``deltagate import``: a store's events as one JSON event per line.

``export`` reads through a deployment's API (so the archive and Redis alike, in order) and can be
resumed: given an ``--output`` file that already holds events, it continues after the last one,
once that file's last and first events are found to be the store's own (same position, same id).
``import`` writes to the deployment's Redis directly (like ``keys`` and ``apply``), keeping every
position, id and time, and can be resumed too: what the store already holds is skipped, once found
to be the same events (a store holding other events is refused). Both show progress on stderr.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class _Held:
    """What an earlier export left in ``--output``: its first and last complete lines' events
    (globalPosition, eventId; None when it holds no complete line), and how many bytes its
    complete lines take (a line cut short after them, from an export that was interrupted, is
    dropped before continuing)."""

    first: tuple[int, str] | None
    last: tuple[int, str] | None
    whole: int
    size: int

    @property
    def next_position(self) -> int:
        return 1 if self.last is None else self.last[0] + 1


def _exported(raw: bytes, path: Path, which: str) -> tuple[int, str]:
    """(globalPosition, eventId) of one line of an earlier export."""
    from broker import codec

    try:
        event = codec.loads(raw)
        position, event_id = event["globalPosition"], event["eventId"]
    except (ValueError, KeyError, TypeError):
        position = event_id = None
    if not isinstance(position, int) or not isinstance(event_id, str):
        usage(f"{path} does not {which} with an exported event; give another --output")
    return position, event_id


def _held(path: Path) -> _Held | None:
    """What ``path`` holds of an earlier export, read without changing it (None: nothing)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb") as held:
        first = held.readline()
        size = held.seek(0, 2)
        tail, start = b"", size
        while start > 0 and tail.count(b"\n") < 2:  # (the last complete line, whole)
            step = min(start, 64 * 1024)
            start -= step
            held.seek(start)
            tail = held.read(step) + tail
    whole = start + tail.rfind(b"\n") + 1
    if whole == 0:  # only a line cut short: nothing to check, nothing to keep
        return _Held(None, None, 0, size)
    last = tail[: whole - start - 1].rsplit(b"\n", 1)[-1]
    return _Held(_exported(first, path, "start"), _exported(last, path, "end"), whole, size)


async def _check_held(client: Any, store: str, held: _Held, path: Path) -> None:
    """An export is continued only into a file of the same store's events: the events of the
    file's last line (and first line, unless retention has deleted it since) must be the
    store's, same globalPosition, same eventId. Otherwise it is refused, the file untouched:
    continuing another store's file would append to it (or add nothing) and look like a
    backup."""
    checks = [("last", held.last)]
    if held.first != held.last:
        checks.append(("first", held.first))
    for which, line in checks:
        if line is None:
            continue
        position, event_id = line
        page = await client.query(store, from_position=position, to_position=position, limit=1)
        found = [e for e in page["events"] if e.get("globalPosition") == position]
        if found and found[0].get("eventId") == event_id:
            continue
        gone = int(page.get("truncatedBefore") or 0) > position
        if which == "first" and gone:
            continue  # (retention since the file was begun: its last line vouches for it)
        if gone:
            now = "is gone from the store"
        elif found:
            now = f"is {found[0].get('eventId')}"
        else:
            now = "is not in the store"
        fail(
            f"{path} is not an export of '{store}': its {which} line is event {event_id} at "
            f"globalPosition {position}, and the store's event there {now}. Nothing was "
            "written; give another --output (or remove the file) for a new export"
        )


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

    held = None if output is None else _held(output)
    start = from_position
    if start is None and held is not None:
        start = held.next_position
    start = start or 1
    err = console(stderr=True)

    async def go() -> int:
        async with client_for(url, api_key) as client:
            head = int((await client.get_store(store))["statistics"]["headPosition"])
            if held is not None and output is not None:
                await _check_held(client, store, held, output)
                if held.whole < held.size:
                    with output.open("rb+") as cut:
                        cut.truncate(held.whole)
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
