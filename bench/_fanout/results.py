"""What the fan-out phases measured: a ``Step`` of a rate scenario (one rate, one server, one
repetition), the ``Steps`` of a scenario gathered per server and rate, the RSS of ``Idle``
connections, ``Replay`` and reconnect ``Storm`` times, ``Stalled`` readers; and per server a
``Result`` holding them for the report."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from _common import Spread

from .plan import P99_LIMIT


@dataclass
class Step:
    label: str
    """The row: a server's name, or a server with a subscription mix."""
    rate: int
    subscribers: int
    appended: float
    """Events appended per second in the measured window (successful appends)."""
    deliveries: float
    """Event frames received per second in the measured window (receive time)."""
    p50: float
    p99: float
    slowest: float
    missing: float
    """Fraction of the window's events (times subscribers) not received by the end of drain."""
    lost: int
    """How many those are."""
    server_cpu: float
    """Cores used by the server in the window (its parts apart, e.g. nginx, excluded)."""
    parts_cpu: dict[str, float]
    """Cores used by the server's parts reported apart."""
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

    @property
    def redis_us_per_delivery(self) -> float:
        if self.redis_cpu is None or not self.deliveries:
            return math.nan
        return self.redis_cpu / self.deliveries * 1e6

    def part_us(self, name: str) -> float:
        cpu = self.parts_cpu.get(name)
        return cpu / self.deliveries * 1e6 if cpu is not None and self.deliveries else math.nan


@dataclass
class Steps:
    """Every repetition of every step of a scenario, by (label, rate)."""

    runs: dict[tuple[str, int], list[Step]] = field(default_factory=dict)

    def add(self, step: Step) -> None:
        self.runs.setdefault((step.label, step.rate), []).append(step)

    def labels(self) -> list[str]:
        return list(dict.fromkeys(label for label, _ in self.runs))

    def rates(self) -> list[int]:
        return sorted({rate for _, rate in self.runs})

    def get(self, label: str, rate: int) -> list[Step]:
        return self.runs.get((label, rate), [])

    def spread(self, label: str, rate: int, figure: Callable[[Step], float]) -> Spread:
        return Spread.of([figure(s) for s in self.get(label, rate)])

    def all(self) -> list[Step]:
        return [s for steps in self.runs.values() for s in steps]


@dataclass
class Idle:
    """RSS growth per idle connection, one figure per repetition (a fresh process each)."""

    per_conn: dict[int, list[float]] = field(default_factory=dict)
    """Connections -> bytes per connection, one per repetition."""
    base: list[int] = field(default_factory=list)
    connect_s: dict[int, list[float]] = field(default_factory=dict)
    refused: int = 0

    def add(self, count: int, per_conn: float, seconds: float) -> None:
        self.per_conn.setdefault(count, []).append(per_conn)
        self.connect_s.setdefault(count, []).append(seconds)

    def kib(self, count: int) -> Spread:
        """KiB per connection at ``count``, over the repetitions."""
        return Spread.of([v / 1024 for v in self.per_conn.get(count, [])])


@dataclass
class Replay:
    append_s: float = 0.0
    seconds: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return Spread.of(self.seconds).median if self.seconds else math.inf


@dataclass
class Storm:
    clients: int
    events: int
    """Events each client must receive before caughtUp."""
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
            and self.events_min == self.events
            and self.events_max == self.events
        )


@dataclass
class Stalled:
    readers: int
    base_rss: int
    stalled_rss: int
    closed_rss: int
    budget: int | None
    """DELTAGATE_MAX_QUEUED_BYTES if the pod has that setting."""
    seconds: float


@dataclass
class Measured:
    """Everything the fan-out benchmark measured, for the report."""

    names: list[str]
    """The servers, in the order they ran."""
    idle_counts: tuple[int, ...]
    idle: dict[str, Idle]
    rates: Steps
    flat: Steps
    replays: dict[str, Replay]
    storms: dict[str, list[Storm]]
    stalled: Stalled
    notes: list[str]
