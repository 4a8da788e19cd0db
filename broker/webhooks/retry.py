"""When a failed delivery is tried again: the one retry policy every form of ``retryPolicy``
maps onto, the delay after each failed attempt, and how many attempts an event gets before it
becomes a dead letter.

Forms accepted (docs/webhooks.md#retries): deltagate's and the SDK's ``maxAttempts``,
``backoffSeconds``/``backoffMinutes``; DeltaBase's ``strategy`` (exponential, linear, fixed),
``initialDelayMs``, ``maxDelayMs``, ``multiplier``, ``jitterPercent``; and the older
``maxRetries`` (retries after the first attempt) and ``backoffMultiplier``."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

STANDARD_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Retry delays (ceilings, seconds) after each failed attempt, as Standard Webhooks suggests:
5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over about a day and a day and a half."""
MAX_RETRY_DELAY = 24 * 3600.0
MAX_ATTEMPTS = 100
MAX_MULTIPLIER = 100.0
Strategy = Literal["exponential", "linear", "fixed"]
STRATEGIES: tuple[Strategy, ...] = ("exponential", "linear", "fixed")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """One subscription's retries. Every field None: the deployment's schedule, full jitter."""

    max_attempts: int | None = None
    """Attempts in all, the first included. None: the schedule's entries + 1."""
    backoff_seconds: float | None = None
    """The first retry's delay. None with no other field: the schedule."""
    strategy: Strategy | None = None
    """How the delay grows: ``exponential`` (by ``multiplier``), ``linear`` (by the first delay
    each time) or ``fixed``. None: exponential."""
    multiplier: float | None = None
    """Growth per retry of an exponential strategy. None: 2."""
    max_delay_seconds: float | None = None
    """No delay is longer. None: a day."""
    jitter_percent: float | None = None
    """Each delay is drawn within this many percent around its value. None: "full jitter",
    uniform between 0 and the value (retries of endpoints that failed together spread out)."""
    names: tuple[str, ...] = ()
    """The names the attempts, the first delay and the multiplier were written with (``maxRetries``,
    ``backoffMinutes``, ``initialDelayMs``, ``backoffMultiplier``...), so the policy is shown
    as written (``wire``). None of them: deltagate's (``maxAttempts``, ``backoffSeconds``,
    ``multiplier``)."""

    @property
    def uses_schedule(self) -> bool:
        return (
            self.backoff_seconds is None
            and self.strategy is None
            and self.multiplier is None
            and self.max_delay_seconds is None
        )

    @classmethod
    def parse(cls, raw: dict[str, Any], where: str, bad: Callable[[str, str], None]) -> RetryPolicy:
        """A ``retryPolicy`` object (its shape checked by ``request``), every form of it; each
        problem goes to ``bad(field, message)``."""

        def number(name: str, low: float, high: float, unit: str = "") -> float | None:
            value = raw.get(name)
            if value is None:
                return None
            if not _number(value) or not low < float(value) <= high:
                bad(f"{where}.{name}", f"must be more than {low:g} and at most {high:g}{unit}")
                return None
            return float(value)

        attempts: int | None = None
        for name, extra in (("maxAttempts", 0), ("maxRetries", 1)):
            value = raw.get(name)
            if value is None:
                continue
            low = 1 - extra
            if not isinstance(value, int) or isinstance(value, bool):
                bad(f"{where}.{name}", "must be an integer")
            elif not low <= value <= MAX_ATTEMPTS - extra:
                bad(f"{where}.{name}", f"must be {low} to {MAX_ATTEMPTS - extra}")
            elif attempts is not None and attempts != value + extra:
                bad(where, "maxAttempts must be maxRetries + 1 when both are given")
            else:
                attempts = value + extra
        delays = [
            (name, seconds * unit)
            for name, unit, top in (
                ("backoffSeconds", 1.0, MAX_RETRY_DELAY),
                ("backoffMinutes", 60.0, MAX_RETRY_DELAY / 60),
                ("initialDelayMs", 0.001, MAX_RETRY_DELAY * 1000),
            )
            if (seconds := number(name, 0, top)) is not None
        ]
        if len(delays) > 1:
            bad(where, "give one of backoffSeconds, backoffMinutes and initialDelayMs")
        multipliers = [
            value
            for name in ("multiplier", "backoffMultiplier")
            if (value := number(name, 0, MAX_MULTIPLIER)) is not None
        ]
        if len(multipliers) == 2 and multipliers[0] != multipliers[1]:
            bad(where, "multiplier and backoffMultiplier differ")
        if any(m < 1 for m in multipliers):
            bad(f"{where}.multiplier", "must be at least 1")
        strategy = raw.get("strategy")
        if strategy is not None and strategy not in STRATEGIES:
            bad(f"{where}.strategy", "must be 'exponential', 'linear' or 'fixed'")
            strategy = None
        max_delay = number("maxDelayMs", 0, MAX_RETRY_DELAY * 1000, " (one day)")
        jitter = raw.get("jitterPercent")
        if jitter is not None and (not _number(jitter) or not 0 <= float(jitter) <= 100):
            bad(f"{where}.jitterPercent", "must be 0 to 100")
            jitter = None
        first = delays[0][1] if delays else None
        if first is not None and max_delay is not None and max_delay / 1000 < first:
            bad(f"{where}.maxDelayMs", "is shorter than the first delay")
        return cls(
            attempts,
            first,
            strategy,
            multipliers[0] if multipliers else None,
            None if max_delay is None else max_delay / 1000,
            None if jitter is None else float(jitter),
            tuple(name for name in _ALIASES if raw.get(name) is not None),
        )

    def wire(self) -> dict[str, Any]:
        """As stored and shown: each value under the name(s) it was written with (an app reads
        back the ``backoffMinutes`` it wrote), deltagate's names for values given otherwise."""
        out: dict[str, Any] = {}
        names = self.names
        if self.max_attempts is not None:
            if "maxAttempts" in names or "maxRetries" not in names:
                out["maxAttempts"] = self.max_attempts
            if "maxRetries" in names:
                out["maxRetries"] = self.max_attempts - 1
        if self.backoff_seconds is not None:
            if "backoffMinutes" in names:
                out["backoffMinutes"] = _whole(self.backoff_seconds / 60)
            elif "initialDelayMs" in names:
                out["initialDelayMs"] = _whole(round(self.backoff_seconds * 1000, 6))
            else:
                out["backoffSeconds"] = _whole(self.backoff_seconds)
        if self.strategy is not None:
            out["strategy"] = self.strategy
        if self.multiplier is not None:
            if "multiplier" in names or "backoffMultiplier" not in names:
                out["multiplier"] = _whole(self.multiplier)
            if "backoffMultiplier" in names:
                out["backoffMultiplier"] = _whole(self.multiplier)
        if self.max_delay_seconds is not None:
            out["maxDelayMs"] = _whole(self.max_delay_seconds * 1000)
        if self.jitter_percent is not None:
            out["jitterPercent"] = _whole(self.jitter_percent)
        return out

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> RetryPolicy:
        """A policy as ``wire`` stored it (validated when it was parsed), any of its names."""
        attempts = value.get("maxAttempts")
        if attempts is None and value.get("maxRetries") is not None:
            attempts = value["maxRetries"] + 1
        first = value.get("backoffSeconds")
        if first is None and value.get("backoffMinutes") is not None:
            first = value["backoffMinutes"] * 60
        if first is None and value.get("initialDelayMs") is not None:
            first = value["initialDelayMs"] / 1000
        multiplier = value.get("multiplier", value.get("backoffMultiplier"))
        max_delay = value.get("maxDelayMs")
        return cls(
            attempts,
            first,
            value.get("strategy"),
            multiplier,
            None if max_delay is None else max_delay / 1000,
            value.get("jitterPercent"),
            tuple(name for name in _ALIASES if value.get(name) is not None),
        )


def retry_delay(
    policy: RetryPolicy, schedule: tuple[float, ...], failed: int, rng: random.Random
) -> float:
    """Seconds to wait after the ``failed``-th failed attempt.

    The delay's value: the schedule's entry (its last one repeating) when the policy sets no
    delay or growth; otherwise the first delay (``backoffSeconds``, or the schedule's first entry)
    grown by the strategy: exponential ``first * multiplier**(failed-1)`` (multiplier 2 unless
    set), linear ``first * failed``, fixed ``first``; at most ``maxDelayMs`` (and a day). Then
    jitter: uniform in [0, value] by default ("full jitter"), or within ``jitterPercent`` around
    the value, still at most the maximum."""
    top = min(policy.max_delay_seconds or MAX_RETRY_DELAY, MAX_RETRY_DELAY)
    if policy.uses_schedule:
        value = schedule[min(failed - 1, len(schedule) - 1)]
    else:
        first = policy.backoff_seconds if policy.backoff_seconds is not None else schedule[0]
        strategy = policy.strategy or "exponential"
        if strategy == "fixed":
            value = first
        elif strategy == "linear":
            value = first * failed
        else:
            multiplier = policy.multiplier if policy.multiplier is not None else 2.0
            value = first * multiplier ** min(failed - 1, 64)
        value = min(value, top)
    if policy.jitter_percent is None:
        return rng.uniform(0.0, value)
    spread = value * policy.jitter_percent / 100
    return min(max(0.0, rng.uniform(value - spread, value + spread)), top)


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


_ALIASES = (
    "maxAttempts",
    "maxRetries",
    "backoffSeconds",
    "backoffMinutes",
    "initialDelayMs",
    "multiplier",
    "backoffMultiplier",
)
"""The names of a value that can be written more than one way."""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: float) -> float | int:
    return int(value) if value == int(value) else value
