"""Backups: events as exported (one JSON event per line, exactly as the API serves them) restored
into a store with everything kept: globalPosition, streamPosition, eventId, transactionId,
createdAt, tags, schemaVersion (``scripts/import.lua``).

A restore continues the store's log: into an empty store it starts wherever the export starts
(positions before it are then history that is gone), and restarting an interrupted restore skips
what the store already holds, once ``check`` has found it to be the same events (same positions,
same eventIds). Restored events are not announced live: subscribers get them from the log (a pod's
feed notices the head moved within its poll interval).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from . import codec
from .errors import BrokerError
from .keys import StoreKeys
from .reader import entry_event, keys_of
from .redis import call, load_script

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
    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._import = load_script(redis, "import")

    async def head(self, store: str) -> tuple[str, int]:
        """The store's uid and head. Raises StoreNotFound."""
        uid, head = await call(self._redis.hmget(keys_of(store).meta, "uid", "head"))
        if uid is None:
            from .errors import StoreNotFound

            raise StoreNotFound(store)
        return uid, int(head or 0)

    async def check(self, store: str, events: Sequence[Any], first_line: int = 1) -> None:
        """Check exported events at positions the store already holds: each must be the event
        the store has there (same eventId), or the file is not this store's. Events no longer in
        Redis (archived, or gone) are not compared; the store's last event always stays there.
        Raises ImportRejected naming the line of the first event that differs."""
        for i, event in enumerate(events):
            _args(event, f"line {first_line + i}")
        log = keys_of(store).log
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                at = f"{event['globalPosition']}-0"
                pipe.xrange(log, at, at)
            held = await call(pipe.execute())
        for i, (event, entries) in enumerate(zip(events, held, strict=True)):
            if not entries:
                continue
            there = codec.event_id_of(entry_event(entries[0]).json)
            if there != event["eventId"]:
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
