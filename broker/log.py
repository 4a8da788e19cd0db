"""The event log of every store: appends (and, through ``LogReader``, every read).

Layout (keys in ``broker.keys``): the store's log is a Redis Stream whose entry ``g-0`` is the event
with globalPosition ``g`` (fields ``s`` stream id, ``t`` type, ``p`` stream position, ``e`` the
event's JSON after its positions); each stream has a list of its events' globalPositions, so
streamPosition ``offset + k`` is list index ``k``. The append script (``scripts/append.lua``) is the
only writer of new events; ``broker.lifecycle`` moves old ones to the archive and trims them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import codec
from .archive import Archive
from .errors import EventTooLarge, InvalidEvent, NotReplicated, StoreNotFound, VersionConflict
from .reader import LogReader, keys_of
from .redis import call, load_script, returns_raw_entries, sharded
from .types import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    iso_at,
)

SCAN_PAGE = 1000
MAX_EVENT_BYTES = 1024 * 1024
ANNOUNCEMENT_ARG = 9
BYTES_ARG = 10
"""Indexes in append.lua's ARGV (0-based here) of the announcement's tail and the bodies' size."""


# RFC 9562 section 5.4: the version nibble (byte 6) is 4, the variant bits (byte 8) are 10.
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


def uuid4_batch(n: int) -> list[str]:
    """n random (version 4) UUIDs in canonical text form from one ``os.urandom`` call.

    Formatted from one hex string: building ``uuid.UUID`` objects cost ~1.4 us per event, 40%
    of an append's Python time (py-spy on bench/append.py's broker phase)."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-"
        f"{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


@dataclass(frozen=True, slots=True)
class LogLimits:
    max_event_bytes: int = MAX_EVENT_BYTES
    idempotency_ttl: int = 24 * 3600


class EventLog(LogReader):
    """Appends and reads events. Safe to share between tasks; holds no per-request state."""

    def __init__(
        self,
        redis: Any,
        *,
        limits: LogLimits | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
        archive: Archive | None = None,
    ) -> None:
        if not returns_raw_entries(redis):
            raise TypeError(
                "EventLog reads log entries raw: give it a client from broker.connect()"
            )
        super().__init__(redis, archive)
        self._limits = limits or LogLimits()
        self._publish = "SPUBLISH" if sharded(redis) else "PUBLISH"
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._append = load_script(redis, "append")

    # -- writing -----------------------------------------------------------------------------

    async def append(
        self,
        store: str,
        stream_id: str,
        events: Sequence[NewEvent],
        *,
        expected: ExpectedVersion = "any",
        idempotency_key: str | None = None,
        auto_create: bool = False,
    ) -> AppendResult:
        """Append ``events`` to ``stream_id``, all or nothing, publishing them for live delivery.

        Raises VersionConflict, StoreNotFound, EventTooLarge or Unavailable. With an
        idempotency key seen in the last 24 h for this store, nothing is written and the first
        append's result (or conflict) comes back.
        """
        k = keys_of(store)
        if not events:
            raise ValueError("an append needs at least one event")
        transaction_id = str(uuid.uuid4())
        now = time.time()
        created_at = iso_at(now)
        args: list[Any] = [
            str(expected),
            stream_id,
            created_at,
            str(uuid.uuid4()) if auto_create else "",
            k.channel,
            self._publish,
            self._limits.idempotency_ttl if idempotency_key else 0,
            transaction_id,
            int(now * 1000),
            b"",  # the announcement's tail, below
            0,  # the bodies' bytes, below
        ]
        announced: list[bytes] = []
        event_ids = uuid4_batch(len(events))
        for index, event in enumerate(events):
            try:
                data = codec.encode_payload(event.data)
                metadata = None if event.metadata is None else codec.encode_payload(event.metadata)
            except codec.JSONEncodeError as exc:
                reason = f"data or metadata cannot be stored as JSON: {exc}"
                raise InvalidEvent(
                    f"event {index}: {reason}", {"field": f"events.{index}", "message": reason}
                ) from None
            size = len(data) + (len(metadata) if metadata is not None else 0)
            if size > self._limits.max_event_bytes:
                raise EventTooLarge(
                    f"event {index} has {size} bytes of data and metadata; the limit is "
                    f"{self._limits.max_event_bytes}",
                    {"index": index, "size": size, "limit": self._limits.max_event_bytes},
                )
            body = codec.event_body(
                event,
                data=data,
                metadata=metadata,
                stream_id=stream_id,
                event_id=event_ids[index],
                transaction_id=transaction_id,
                created_at=created_at,
            )
            args.append(event.type)
            args.append(body)
            announced.append(event.type.encode())
            announced.append(body)
        # Joined here rather than in the script: Redis is the one shared CPU of a deployment.
        args[ANNOUNCEMENT_ARG] = codec.SEPARATOR_BYTES.join(announced)
        args[BYTES_ARG] = sum(len(body) for body in announced[1::2])
        idem = k.idempotency(idempotency_key) if idempotency_key else k.meta
        script_keys = [
            k.meta,
            k.log,
            k.stream(stream_id),
            k.streams,
            k.stream_created,
            k.stream_updated,
            idem,
            k.times,
            k.offsets,
        ]
        if not self._wait_replicas:
            reply = await call(self._append(keys=script_keys, args=args))
            return self._append_result(store, stream_id, expected, reply, transaction_id)
        # WAIT counts the writes of its own connection, so it rides the script's pipeline.
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._append(keys=script_keys, args=args, client=pipe)  # queues EVALSHA
            pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)
            reply, replicas = await call(pipe.execute())
        result = self._append_result(store, stream_id, expected, reply, transaction_id)
        if int(replicas) < self._wait_replicas and not result.replayed:
            raise NotReplicated(
                f"appended, but only {replicas} of {self._wait_replicas} replicas confirmed "
                "in time; retry with the same idempotency key to confirm",
                {
                    "written": True,
                    "replicas": int(replicas),
                    "globalPosition": result.last_position,
                },
            )
        return result

    @staticmethod
    def _append_result(
        store: str, stream_id: str, expected: ExpectedVersion, reply: list[Any], txid: str
    ) -> AppendResult:
        kind = reply[0]
        if kind == "ok":
            first, last, version = int(reply[1]), int(reply[2]), int(reply[3])
            return AppendResult(
                stream_id,
                first,
                last,
                version,
                last - first + 1,
                txid,
                created_store=bool(int(reply[4])),
            )
        if kind == "conflict":
            raise VersionConflict(stream_id, expected, int(reply[1]))
        if kind == "nostore":
            raise StoreNotFound(store)
        # An idempotent replay: the record the first append left.
        status, rest = reply[1].split("|", 1)
        if status == "409":
            first_expected, current, first_stream = rest.split("|", 2)
            was: ExpectedVersion = (
                int(first_expected) if first_expected.lstrip("-").isdigit() else first_expected  # type: ignore[assignment]
            )
            raise VersionConflict(first_stream, was, int(current))
        first_s, last_s, version_s, first_txid, first_stream = rest.split("|", 4)
        first, last = int(first_s), int(last_s)
        return AppendResult(
            first_stream, first, last, int(version_s), last - first + 1, first_txid, replayed=True
        )
