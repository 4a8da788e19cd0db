"""What the fan-out benchmark measures and for how long: the sizes of its phases, the rates it
offers, the goals it reports against, and (``Plan``) the durations and repetitions, shorter with
``--quick``."""

from __future__ import annotations

from dataclasses import dataclass

from _common import Context

SUBSCRIBERS = 1000
FLAT_SUBSCRIBERS = 100
FLAT_RATE = 3000
"""Events/s offered in the flat-out scenario: 300,000 deliveries/s to 100 subscribers, more than
any server here sends on this host, so each one runs at its own limit."""
HEADLINE_RATES = (30, 100)
"""The rates of the headline (1,000 subscribers each)."""
MIX_FILTERS = ("*o*p*", "*r*a*", "o*e*d", "*d*.*c*")
"""A complex-pattern subscription mix (``*a*b*`` shapes, each matching ``order.placed``), beside
``*``: the linear-time filter matcher's cost per delivery (issue 13)."""
P99_LIMIT = 0.100
REPLAY_EVENTS = 100_000
REPLAY_BATCH = 1000
STORM_CLIENTS = 1000
STORM_EVENTS = 1000
STALLED_READERS = 200
STALL_MARGIN = 64 * 2**20
"""The fixed margin over DELTAGATE_MAX_QUEUED_BYTES that 200 stalled readers may add to a pod's
RSS (issue 13), once the pod has that setting."""
SUB_WORKERS = 2
APPEND_CONNECTIONS = 16

GOALS = {
    "p99": 0.100,
    "replay_s": 2.0,
    "storm_s": 10.0,
}


@dataclass(frozen=True)
class Plan:
    repeats: int
    """Alternating repetitions of every step: each server in turn, then again."""
    warmup: float
    duration: float
    drain: float
    """Seconds to wait after the appender stops for the window's events still in flight."""
    rates: tuple[int, ...]
    """Events/s offered to 1,000 subscribers (the plot's x axis)."""
    idle_counts: tuple[int, ...]
    """Idle connections RSS is read at, in ascending order."""
    settle: float
    """Factor on the pauses that let a server settle between phases."""

    @property
    def repetitions(self) -> str:
        """How many repetitions, in words."""
        if self.repeats == 1:
            return "one repetition"
        return f"{self.repeats} alternating repetitions"

    @classmethod
    def of(cls, ctx: Context) -> Plan:
        if ctx.quick:
            return cls(1, 0.5, 2.0, 1.0, HEADLINE_RATES, (200, 1000), settle=0.5)
        return cls(3, 1.0, 5.0, 2.0, (10, *HEADLINE_RATES, 300), (1000, 5000), settle=1.0)
