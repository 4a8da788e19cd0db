"""Backups: events as exported (one JSON event per line, exactly as the API serves them) restored
into a store with everything kept: globalPosition, streamPosition, eventId, transactionId,
createdAt, tags, schemaVersion (``scripts/import.lua``).

A restore continues the store's log: into an empty store it starts wherever the export starts
(positions before it are then history that is gone), and restarting an interrupted restore skips
what the store already holds, once ``check`` has found it to be the same events (same positions,
same eventIds, in Redis or in the archive); a store that holds events the file does not start
with is refused (``check_start``). Restored events are not announced live: subscribers get them
from the log (a pod's feed notices the head moved within its poll interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from . import codec
from .archive import Archive
from .errors import BrokerError
from .keys import StoreKeys
from .reader import LogReader, keys_of
from .redis import call, load_script

PAGE = 1000
"""Events read at a time to compare a file with the store."""

REQUIRED = {
    "globalPosition": int,
    "streamPosition": int,
    "streamId": str,
    "type": str,
    "eventId": str,
    "transactionId": str,
    "createdAt": str,
}


class ImportRejected(BrokerError):
    """An exported event the store cannot take (malformed, or not continuing its log)."""

    code = "VALIDATION_ERROR"


def _args(event: Any, where: str) -> list[Any]:
    if not isinstance(event, dict):
        raise ImportRejected(f"{where}: not a JSON object")
    for name, kind in REQUIRED.items():
        value = event.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            raise ImportRejected(f"{where}: {name} is missing or not a {kind.__name__}")
    if event["globalPosition"] < 1 or event["streamPosition"] < 0:
        raise ImportRejected(f"{where}: positions must be globalPosition >= 1, streamPosition >= 0")
    try:
        created = datetime.fromisoformat(event["createdAt"])
    except ValueError:
        raise ImportRejected(f"{where}: createdAt is not an ISO 8601 time") from None
    tags = event.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and "," not in t for t in tags):
        raise ImportRejected(f"{where}: tags must be a list of strings without commas")
    rest = {k: v for k, v in event.items() if k not in ("globalPosition", "streamPosition")}
    body = codec.dumps_str(rest)[1:]  # what codec.positioned() puts after the positions
    return [
        event["globalPosition"],
        event["streamId"],
        event["streamPosition"],
        event["type"],
        body,
        event["createdAt"],
        int(created.timestamp() * 1000),
        ",".join(tags),
    ]


class Importer:
    """Restores exported events into a store. ``archive``: the deployment's, to compare the
    file with the events the store keeps there (without it, a file whose events the store holds
    only in the archive cannot be checked, and is refused)."""

    def __init__(self, redis: Any, archive: Archive | None = None) -> None:
        self._redis = redis
        self._reader = LogReader(redis, archive)
        self._import = load_script(redis, "import")

    async def head(self, store: str) -> tuple[str, int]:
        """The store's uid and head. Raises StoreNotFound."""
        uid, head = await call(self._redis.hmget(keys_of(store).meta, "uid", "head"))
        if uid is None:
            from .errors import StoreNotFound

            raise StoreNotFound(store)
        return uid, int(head or 0)

    @staticmethod
    def check_start(head: int, first: Any, line: int) -> None:
        """The file's first event, for a store whose head is ``head`` when the import starts: a
        store that holds events already takes a file only if the file holds them too (an
        interrupted import resumed: ``check`` then compares them), never one that starts after
        them (another store's events would follow its own)."""
        position = first.get("globalPosition") if isinstance(first, dict) else None
        if head and isinstance(position, int) and position > head:
            raise ImportRejected(
                f"line {line}: the store holds {head} event(s) already and the file starts at "
                f"globalPosition {position}, after them: import into an empty store, or resume "
                "an interrupted import with the same file"
            )

    async def check(self, store: str, events: Sequence[Any], first_line: int = 1) -> None:
        """Check exported events at positions the store already holds: each must be the event
        the store has there (same eventId), in Redis or in the archive, or the file is not this
        store's. Positions whose events retention deleted are not compared. Raises
        ImportRejected naming the line of the first event that differs, or that is in the
        archive when the importer has none to compare with."""
        for i, event in enumerate(events):
            _args(event, f"line {first_line + i}")
        bounds = await self._reader.bounds(store)
        kept = [e["globalPosition"] for e in events if e["globalPosition"] >= bounds.oldest]
        held: dict[int, str] = {}
        if kept:
            low, high = min(kept), max(kept)
            if low < bounds.low and self._reader.archive is None:
                line = first_line + next(
                    i for i, e in enumerate(events) if e["globalPosition"] == low
                )
                raise ImportRejected(
                    f"line {line}: the store keeps globalPosition {low} in its archive; set "
                    "DELTAGATE_ARCHIVE_URL so that the import can check it is the same event"
                )
            cursor = low - 1
            while cursor < high:
                piece = await self._reader.after(store, cursor, min(PAGE, high - cursor), high)
                if not piece.events:
                    break
                for logged in piece.events:
                    held[logged.global_position] = codec.event_id_of(logged.json)
                cursor = piece.events[-1].global_position
        for i, event in enumerate(events):
            there = held.get(event["globalPosition"])
            if there is not None and there != event["eventId"]:
                raise ImportRejected(
                    f"line {first_line + i}: globalPosition {event['globalPosition']} holds "
                    f"another event in the store (eventId {there}, not {event['eventId']}); "
                    "import into an empty store, or resume an interrupted import"
                )

    async def restore(
        self, store: str, uid: str, events: Sequence[Any], first_line: int = 1
    ) -> int:
        """Append exported events (consecutive positions); the store's head after. Raises
        ImportRejected naming the line of the first event it cannot take."""
        k: StoreKeys = keys_of(store)
        args: list[Any] = [uid, k.stream_prefix, k.type_prefix, k.tag_prefix]
        for i, event in enumerate(events):
            args += _args(event, f"line {first_line + i}")
        reply = await call(
            self._import(
                keys=[
                    k.meta,
                    k.log,
                    k.streams,
                    k.stream_created,
                    k.stream_updated,
                    k.offsets,
                    k.times,
                ],
                args=args,
            )
        )
        kind = reply[0]
        if kind == "ok":
            return int(reply[1])
        if kind == "gone":
            raise ImportRejected(f"event store '{store}' was deleted or re-created meanwhile")
        line = first_line + next(
            i for i, e in enumerate(events) if e["globalPosition"] == int(reply[1])
        )
        if kind == "order":
            raise ImportRejected(
                f"line {line}: globalPosition {reply[1]} does not continue the store's log "
                f"(next is {reply[2]}); import into an empty store, or resume an interrupted import"
            )
        raise ImportRejected(
            f"line {line}: its streamPosition does not continue its stream (at version {reply[2]})"
        )
