"""What a query keeps (contract section 7: an accepted filter is applied): of the events a store
query walks (``EventCheck``), and of the streams a listing walks (``StreamCheck``).

A query walks a range of positions (``reader.LogReader.query``: across the archive and Redis);
positions and dates bound that range before it is read, and each event in it then passes the
checks here, cheapest first:

1. stream and type, from the fields stored beside the event's JSON (``filters.Filter``);
2. ``eventId`` / ``transactionId``: first a substring test on the JSON text (an event whose text
   does not hold ``"eventId":"<id>"`` cannot be it), then the decoded field, so only the rare
   candidates that pass the text test are decoded;
3. ``createdAt`` bounds, read from the text without decoding it (``codec.created_at_of``).

The walk ends early when nothing after the current event can match: an ``eventId`` names one
event, and the events of one transaction are consecutive in the log and in each stream (one
append script writes them at consecutive positions).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from . import codec
from .filters import Filter, compile_pattern
from .types import LoggedEvent, StreamInfo, stream_type_of


class EventCheck:
    """The per-event criteria of one query, and whether the walk may stop (``finished``)."""

    def __init__(
        self,
        flt: Filter | None = None,
        *,
        event_id: str | None = None,
        transaction_id: str | None = None,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
    ) -> None:
        self.flt = flt
        self.event_id = event_id
        self.transaction_id = transaction_id
        self.from_date = from_date
        self.to_date = to_date
        self._id_text = None if event_id is None else '"eventId":' + codec.dumps_str(event_id)
        self._tx_text = (
            None if transaction_id is None else '"transactionId":' + codec.dumps_str(transaction_id)
        )
        self._in_transaction = False
        self.finished = False
        """Nothing after the last event checked can match (the walk may stop)."""

    @property
    def reads_events(self) -> bool:
        """Whether events are looked at beyond their stream and type."""
        return (
            self._id_text is not None
            or self._tx_text is not None
            or self.from_date is not None
            or self.to_date is not None
        )

    def keeps(self, event: LoggedEvent) -> bool:
        if self.flt is not None and not self.flt.matches(event.stream_id, event.type):
            return False
        if not self.reads_events:
            return True
        if self._tx_text is not None and not self._of_transaction(event):
            return False
        if self._id_text is not None:
            if self._id_text not in event.json or field(event, "eventId") != self.event_id:
                return False
            self.finished = True  # one event has this id
        if self.from_date is not None or self.to_date is not None:
            created = codec.created_at_of(event.json)
            if self.from_date is not None and created < self.from_date:
                return False
            if self.to_date is not None and created > self.to_date:
                return False
        return True

    def _of_transaction(self, event: LoggedEvent) -> bool:
        assert self._tx_text is not None
        if self._tx_text in event.json and field(event, "transactionId") == self.transaction_id:
            self._in_transaction = True
            return True
        if self._in_transaction:
            self.finished = True  # past the transaction's last event
        return False


def field(event: LoggedEvent, name: str) -> object:
    """One of the event's own top-level fields, decoded."""
    return codec.event_of(event.json).get(name)


class StreamCheck:
    """What a streams listing keeps. The checks on the id alone (type, id, pattern, search) cost
    nothing beyond the ids; positions and dates need each stream's fields (``reads_fields``)."""

    def __init__(
        self,
        *,
        types: Iterable[str] | None = None,
        stream_id: str | None = None,
        pattern: str | None = None,
        contains: str | None = None,
        min_position: int | None = None,
        max_position: int | None = None,
        from_date: datetime | None = None,
        to_date: datetime | None = None,
    ) -> None:
        self.types = None if types is None else frozenset(types)
        self.stream_id = stream_id
        self._pattern = None if pattern is None else compile_pattern(pattern)
        self._contains = None if not contains else contains.lower()
        self.min_position = min_position
        self.max_position = max_position
        self.from_date = from_date
        self.to_date = to_date

    @property
    def reads_fields(self) -> bool:
        return not (
            self.min_position is None
            and self.max_position is None
            and self.from_date is None
            and self.to_date is None
        )

    @property
    def keeps_all(self) -> bool:
        return not self.reads_fields and not (
            self.types is not None
            or self.stream_id is not None
            or self._pattern is not None
            or self._contains is not None
        )

    def keeps_id(self, stream_id: str) -> bool:
        return (
            (self.types is None or stream_type_of(stream_id) in self.types)
            and (self.stream_id is None or stream_id == self.stream_id)
            and (self._pattern is None or self._pattern(stream_id))
            and (self._contains is None or self._contains in stream_id.lower())
        )

    def keeps(self, stream: StreamInfo) -> bool:
        """Whether a stream whose id passed ``keeps_id`` passes the checks on its fields."""
        if self.min_position is not None and stream.stream_position < self.min_position:
            return False
        if self.max_position is not None and stream.stream_position > self.max_position:
            return False
        if self.from_date is None and self.to_date is None:
            return True
        created = datetime.fromisoformat(stream.created_at)
        return (self.from_date is None or created >= self.from_date) and (
            self.to_date is None or created <= self.to_date
        )
