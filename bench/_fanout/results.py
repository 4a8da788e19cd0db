"""What the fan-out phases measured: a ``Step`` of the rate phases (one rate, one server), the
RSS of ``Idle`` connections, ``Replay`` and reconnect ``Storm`` times, and per server a ``Result``
holding them all for the report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .plan import P99_LIMIT, STORM_EVENTS
from .servers import Server


@dataclass
class Step:
    rate: int
    subscribers: int
    appended: float
    """Events appended per second in the measured window (successful appends)."""
    deliveries: float
    """Event frames received per second in the measured window (receive time)."""
    p50: float
    p99: float
    missing: float
    """Fraction of the window's events (times subscribers) not received by the end of drain."""
    server_cpu: float
    """Cores used by the server in the window."""
    rss: int
    loadgen_cpu: list[float]
    """Cores used by each load generator process in the window (subscribers..., appender)."""
    redis_cpu: float | None
    append_p99: float
    append_errors: int
    host_busy: float
    """Share of all the host's cores busy in the window (anyone's work), and stolen."""
    host_steal: float
    errors: list[str] = field(default_factory=list)

    @property
    def expected(self) -> float:
        return self.appended * self.subscribers

    @property
    def behind(self) -> bool:
        return (
            self.missing > 0.01
            or self.deliveries < 0.9 * self.expected
            or self.appended < 0.9 * self.rate
            or self.append_errors > 0
        )

    @property
    def ok(self) -> bool:
        return self.p99 < P99_LIMIT and not self.behind

    @property
    def us_per_delivery(self) -> float:
        return self.server_cpu / self.deliveries * 1e6 if self.deliveries else math.nan


@dataclass
class Idle:
    base_rss: int
    rss: dict[int, int]
    connect_s: dict[int, float]
    refused: int
    failed: int

    def per_conn(self, n: int) -> float:
        return (self.rss[n] - self.base_rss) / n


@dataclass
class Replay:
    append_s: float = 0.0
    seconds: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return sorted(self.seconds)[len(self.seconds) // 2] if self.seconds else math.inf


@dataclass
class Storm:
    clients: int
    caught: int
    seconds: float
    events_min: int
    events_max: int
    connect_s: float
    refused: int
    server_cpu: float
    errors: list[str]

    @property
    def complete(self) -> bool:
        return (
            self.caught == self.clients
            and self.events_min == STORM_EVENTS
            and self.events_max == STORM_EVENTS
        )


@dataclass
class Result:
    server: Server
    idle: Idle | None = None
    steps: dict[int, Step] = field(default_factory=dict)
    retried: dict[int, Step] = field(default_factory=dict)
    """Failed first runs of climbing steps that were run again."""
    first_fail: int | None = None
    highest: int = 0
    replay: Replay = field(default_factory=Replay)
    storm: Storm | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.server.name
