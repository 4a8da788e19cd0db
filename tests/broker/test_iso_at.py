"""``iso_at``, the log's spelling of a time, spells the second once per second: it must still
write every instant exactly as ``datetime`` does (microseconds rounded, then cut to
milliseconds), at second boundaries, near a microsecond's half and when the second changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from broker.types import iso_at


def spelled_by_datetime(epoch_seconds: float) -> str:
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_every_instant_is_spelled_as_datetime_spells_it() -> None:
    rng = random.Random(7)
    instants = [0.0, 1.0, 0.9995, 0.9999995, 1_700_000_000.0, 4_102_444_799.9999]
    for _ in range(50_000):
        second = rng.randrange(0, 4 * 10**9)
        instants += [
            rng.uniform(0, 4e9),
            second + rng.randrange(1000) / 1000,  # on a millisecond
            second + 0.9999995 + rng.uniform(-1e-6, 1e-6),  # rounds up into the next second
        ]
    wrong = [x for x in instants if iso_at(x) != spelled_by_datetime(x)]
    assert not wrong, [(x, iso_at(x), spelled_by_datetime(x)) for x in wrong[:5]]


def test_a_run_of_instants_crossing_seconds_and_back() -> None:
    start = 1_764_000_000.0
    instants = [start + i * 0.0007 for i in range(5000)] + [start - 10.25, start + 3.5, start]
    assert [iso_at(x) for x in instants] == [spelled_by_datetime(x) for x in instants]
