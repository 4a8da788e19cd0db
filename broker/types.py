"""Shared vocabulary of the event log. Imports nothing of ours.

An event travels through deltagate as its final JSON text, encoded once when it is appended
(see ``broker.codec``); the few fields the broker itself must look at (position, stream, type)
travel beside it so nothing is ever decoded just to be routed.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple

GlobalPosition = int
"""Position of an event in its store's log: 1, 2, 3, ... with no gaps."""

MAX_POSITION = 2**53
"""The largest position any request may name: JSON numbers are exact up to here in every client."""


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date-time (or a date: its midnight; without an offset: UTC), in UTC.
    ValueError for anything else, and for an instant UTC cannot hold (past the year 9999 once
    its offset is taken off): such a time compared or moved later would overflow."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} lies outside the years 1 to 9999 in UTC") from None


@dataclass(frozen=True, slots=True)
class TimeStart:
    """Start at the first event created at or after ``moment`` (``position: {"time": ...}``)."""

    moment: datetime

    @classmethod
    def parse(cls, value: object) -> TimeStart:
        """``{"time": "2026-12-01T10:00:00Z"}`` (ISO 8601; a time without zone is UTC)."""
        text = value.get("time") if isinstance(value, dict) and set(value) == {"time"} else None
        if not isinstance(text, str) or len(text) > 64:
            raise ValueError('a time position is {"time": "<ISO 8601 instant>"}')
        return cls(parse_instant(text))

    @property
    def wire(self) -> dict[str, str]:
        return {"time": self.moment.isoformat().replace("+00:00", "Z")}


StartPosition = GlobalPosition | Literal["latest", "earliest"] | TimeStart
"""Where a live subscription or a webhook starts: after the head at subscribe time, from the
first retained event, after a globalPosition (exclusive), or from a time."""


START_POSITION_FORMS = (
    "'latest', 'earliest', a globalPosition (integer >= 0) or {\"time\": \"<ISO 8601>\"}"
)


def parse_start(value: object) -> StartPosition:
    """A start position as a subscription gives it (WebSocket, SSE, webhooks): ``latest``,
    ``earliest``, a globalPosition >= 0 or ``{"time": ISO 8601}``; ValueError saying what is
    wrong otherwise (each caller answers it in its own error format)."""
    if value == "latest" or value == "earliest":
        return value  # type: ignore[return-value]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POSITION:
        return value
    if isinstance(value, dict):
        return TimeStart.parse(value)
    raise ValueError(f"must be {START_POSITION_FORMS}")


_second: tuple[int, str] = (0, "1970-01-01T00:00:00")
"""The last whole second ``iso_at`` spelled, and its spelling (one per second, not per call)."""


def iso_at(epoch_seconds: float) -> str:
    """A time as the log writes times: ISO 8601 UTC with milliseconds and a ``Z`` (the
    microsecond rounded as ``datetime.fromtimestamp`` rounds it, then cut to milliseconds, as
    ``isoformat`` cuts it). Spelling the second costs ~1 us (a dispatcher saves progress, a pod
    appends, thousands of times a second), so it is done once per second."""
    global _second
    second = math.floor(epoch_seconds)
    micro = round((epoch_seconds - second) * 1_000_000)  # (the difference is exact)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    if second != _second[0]:
        spelled = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (second, spelled)
    return f"{_second[1]}.{micro // 1000:03d}Z"


def now_iso() -> str:
    return iso_at(time.time())


ExpectedVersion = int | Literal["any", "no_stream", "stream_exists"]
"""What an append expects of its stream: an exact version (= number of events), or a condition."""

Direction = Literal["forward", "backward"]


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event as the log holds it: routing fields plus the encoded event JSON."""

    global_position: GlobalPosition
    stream_id: str
    type: str
    json: str


class NewEvent(NamedTuple):
    """An event to append, already validated by the caller.

    A named tuple rather than a frozen dataclass: a request body makes one per event, and a
    frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost ~0.5 us more
    each, 6% of a pod's CPU under 100-event appends (py-spy)."""

    type: str
    data: dict | None
    metadata: dict | None = None
    schema_version: int | str = 1
    """As the client wrote it: DeltaBase's are strings ("1.0.0"); integers are kept as such."""
    tags: tuple[str, ...] = ()
    """DCB tags (no commas): stored with the event and indexed (broker/dcb.py)."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream_id: str
    first_position: GlobalPosition
    last_position: GlobalPosition
    stream_version: int
    events_written: int
    transaction_id: str
    replayed: bool = False
    """True when an idempotency key matched an earlier append: nothing was written now."""
    created_store: bool = False
    """True when this append created its store (dev mode's auto-create)."""
    events: Sequence[LoggedEvent] = ()
    """The events written, as a read returns them (for a replay: as the log holds them now)."""

    @property
    def created_stream(self) -> bool:
        """The stream had no events before this append."""
        return self.stream_version == self.events_written


@dataclass(frozen=True, slots=True)
class StoreInfo:
    name: str
    description: str | None
    settings: dict
    created_at: str
    head_position: GlobalPosition
    total_streams: int
    uid: str = ""
    """Made when the store is created: a store deleted and created again has a new one."""
    low: GlobalPosition = 1
    """The lowest position still in Redis (docs/lifecycle.md)."""
    oldest: GlobalPosition = 1
    """The lowest position kept anywhere: retention deleted everything before it."""
    archived: GlobalPosition = 0
    """The highest position durably in the archive."""
    bytes: int = 0
    """Bytes of the kept events' JSON."""
    oldest_at: str | None = None
    """``createdAt`` of the oldest event kept (None: no events)."""
    newest_at: str | None = None
    """``createdAt`` of the newest event (None: no events)."""

    @property
    def total_events(self) -> int:
        """Events kept (positions have no gaps; retention deletes only the oldest)."""
        return max(0, self.head_position - self.oldest + 1)

    @property
    def hot_events(self) -> int:
        return max(0, self.head_position - self.low + 1)

    @property
    def archived_events(self) -> int:
        return max(0, self.archived - self.oldest + 1)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: str
    stream_position: int
    """Position of the stream's last event (version - 1)."""
    created_at: str
    updated_at: str

    @property
    def stream_type(self) -> str:
        return stream_type_of(self.stream_id)


_TYPE_END = re.compile("[-_:]")


def stream_type_of(stream_id: str) -> str:
    """DeltaBase's convention: a stream's type is its id up to the first ``-``, ``_`` or ``:``
    (``order-123``, ``order_123`` and ``order:123`` are ``order`` streams; ``cart`` is ``cart``)."""
    return _TYPE_END.split(stream_id, maxsplit=1)[0]


@dataclass(frozen=True, slots=True)
class Page:
    events: list[LoggedEvent]
    has_more: bool
    total: int | None = None
    truncated_before: int | None = None
    """The query started before the oldest position kept, which is this one."""
    stream_version: int | None = None
    """When the query walked one stream: its version (number of events) when first read."""
    stream_truncated_before: int | None = None
    """When the query walked one stream from before its first kept event: that event's
    streamPosition."""
