"""The dispatcher's knobs (``DispatcherOptions``, from the ``DELTAGATE_DISPATCHER_*`` and
``DELTAGATE_WEBHOOK_*`` settings) and where it reports what it does (``DispatchObserver``: the
dispatcher process wires Prometheus metrics to it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .delivery import Result
from .retry import STANDARD_SCHEDULE
from .targets import TargetPolicy


class DispatchObserver(Protocol):
    def attempt(self, result: Result, seconds: float) -> None: ...

    def retry(self) -> None: ...

    def dead_letter(self) -> None: ...

    def history_gone(self, events: int) -> None:
        """Positions a subscription had not delivered were deleted everywhere by retention."""


class Unobserved:
    def attempt(self, result: Result, seconds: float) -> None:
        pass

    def retry(self) -> None:
        pass

    def dead_letter(self) -> None:
        pass

    def history_gone(self, events: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class DispatcherOptions:
    lease_seconds: float = 5.0
    """A dead replica's subscriptions are taken over about this long after it died."""
    poll_interval: float = 1.0
    """How often to look for new subscriptions and new events (pub/sub only rings the bell)."""
    max_in_flight: int = 16
    """Requests in flight per subscription (never two of one stream)."""
    window: int = 1000
    """Matching events one subscription may have read ahead of its saved position (up to
    ``tail.READ_AHEAD`` times as many while they hold too few streams)."""
    max_connections: int = 100
    """Requests in flight of the whole replica."""
    timeout: float = 10.0
    """Seconds per request, unless the subscription says otherwise."""
    retry_schedule: tuple[float, ...] = STANDARD_SCHEDULE
    auto_pause_seconds: float = 5 * 24 * 3600.0
    """A subscription whose endpoint kept failing this long is auto-paused (0: never)."""
    dead_letter_limit: int = 10_000
    drain_seconds: float = 20.0
    """On close, in-flight requests get this long to finish."""
    replica_id: str | None = None
    targets: TargetPolicy = field(default_factory=TargetPolicy)
    """Which addresses webhooks may reach (public ones only by default)."""
