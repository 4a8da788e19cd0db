"""What the fan-out benchmark measures and for how long: the sizes of its phases, the rates it
tries, the goals it reports against, and (``Plan``) the durations, shorter with ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass

from _common import Context

SUBSCRIBERS = 1000
FIXED_RATES = (10, 50, 100, 300)
P99_LIMIT = 0.100
IDLE_COUNTS = (1000, 5000)
REPLAY_EVENTS = 100_000
REPLAY_BATCH = 1000
STORM_CLIENTS = 1000
STORM_EVENTS = 1000
SUB_WORKERS = 2
APPEND_CONNECTIONS = 16

GOALS = {
    "rate_ratio": 0.70,
    "p99_at_50": 0.050,
    "rss_ratio": 1.10,
    "replay_s": 2.0,
    "storm_s": 10.0,
}


@dataclass(frozen=True)
class Plan:
    warmup: float
    duration: float
    drain: float
    """Seconds to wait after the appender stops for the window's events still in flight."""
    ladder: tuple[int, ...]
    """Rates tried in ascending order, per server until its first failure (the fixed rates
    always)."""
    bisections: int
    replay_runs: int
    confirm: bool
    """Re-run a failing step of the climb once before taking it as the server's limit: on a
    shared host one scheduler hiccup can spoil a p99."""
    settle: float
    """Factor on the pauses that let a server settle between phases."""

    @classmethod
    def of(cls, ctx: Context) -> Plan:
        if ctx.quick:
            ladder = (10, 30, 50, 100, 300)
            return cls(0.5, 2.0, 1.0, ladder, 0, replay_runs=1, confirm=False, settle=0.5)
        ladder = (10, 15, 20, 25, 30, 40, 50, 60, 70, 85, 100, 120, 150, 200, 300, 500, 700, 1000)
        return cls(1.0, 5.0, 2.0, ladder, 1, replay_runs=3, confirm=True, settle=1.0)
