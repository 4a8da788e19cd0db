"""When a failed delivery is tried again: the delay after each failed attempt (exponential, with
full jitter) and how many attempts an event gets before it becomes a dead letter."""

from __future__ import annotations

import math
import random

from .config import RetryPolicy

STANDARD_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Retry delays (ceilings, seconds) after each failed attempt, as Standard Webhooks suggests:
5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about a day and a day and a half."""
MAX_RETRY_DELAY = 24 * 3600.0


def retry_delay(
    policy: RetryPolicy, schedule: tuple[float, ...], failed: int, rng: random.Random
) -> float:
    """Seconds to wait after the ``failed``-th failed attempt: uniform in [0, ceiling] ("full
    jitter"), the ceiling growing exponentially: ``backoffSeconds * 2**(failed-1)`` when the
    subscription sets a backoff, else the schedule's entry (its last one repeating)."""
    if policy.backoff_seconds is not None:
        ceiling = min(policy.backoff_seconds * 2.0 ** min(failed - 1, 64), MAX_RETRY_DELAY)
    else:
        ceiling = schedule[min(failed - 1, len(schedule) - 1)]
    return rng.uniform(0.0, ceiling)


def max_attempts(policy: RetryPolicy, schedule: tuple[float, ...]) -> int:
    """Attempts an event gets in all (the first included) before it is dead-lettered."""
    return policy.max_attempts or len(schedule) + 1


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5,300,1800"`` -> (5.0, 300.0, 1800.0); ValueError unless 1 to 99 positive numbers."""
    values = tuple(float(part) for part in text.split(",") if part.strip())
    if not 1 <= len(values) <= 99 or any(
        not math.isfinite(v) or not 0 < v <= MAX_RETRY_DELAY for v in values
    ):
        raise ValueError("1 to 99 comma-separated delays in seconds, each above 0 and <= 86400")
    return values
