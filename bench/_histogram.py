"""The fan-out benchmark's latency histogram: bench/_loadgen.py counts into it, bench/fanout.py
reads percentiles out of it. One layout, defined here for both.

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``).
"""

from __future__ import annotations

import math

FINE = 10_000
"""Buckets of 0.1 ms below 1 s ..."""
COARSE = 6_000
"""... then of 10 ms up to 61 s (anything later lands in the last bucket)."""
BUCKETS = FINE + COARSE


def bucket(latency: float) -> int:
    """The bucket of ``latency`` seconds."""
    if latency < 1.0:
        return max(0, int(latency * 10_000))
    return FINE + min(COARSE - 1, int((latency - 1.0) * 100))


def bucket_seconds(index: int) -> float:
    """The middle of bucket ``index``, in seconds."""
    if index < FINE:
        return (index + 0.5) / 10_000
    return 1.0 + (index - FINE + 0.5) / 100


def hist_percentile(hist: dict[int, int], total: int, q: float) -> float:
    """The q-quantile of ``total`` latencies of which ``hist`` (bucket -> count) holds those that
    arrived; the missing ones count as infinitely late."""
    if total <= 0:
        return math.nan
    rank = min(total - 1, round(q * (total - 1)))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen > rank:
            return bucket_seconds(index)
    return math.inf
