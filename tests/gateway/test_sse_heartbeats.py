"""The pod's one heartbeat timer for its SSE responses (gateway/sse/stream.py ``Heartbeats``):
every stream in the wheel beats once per period, the first time no sooner than a period less one
tick after it joined; a stream that left beats no more; the timer runs only while the wheel holds
a stream."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gateway.sse.stream import HEARTBEAT_TICKS, Heartbeats

PERIOD = 0.2


class Stream:
    """Records its beats (the ``keep_alive`` of an ``SseStream``)."""

    def __init__(self) -> None:
        self.beats: list[float] = []

    def keep_alive(self) -> None:
        self.beats.append(asyncio.get_running_loop().time())


def join(wheel: Heartbeats, stream: Stream) -> int:
    return wheel.add(cast(Any, stream))


async def test_each_stream_beats_once_per_period_until_it_leaves() -> None:
    wheel = Heartbeats(PERIOD)
    loop = asyncio.get_running_loop()
    first, joined_first = Stream(), loop.time()
    first_slot = join(wheel, first)
    await asyncio.sleep(PERIOD * 0.45)
    second, joined_second = Stream(), loop.time()
    second_slot = join(wheel, second)
    await asyncio.sleep(PERIOD * 3.2)
    for stream, joined in ((first, joined_first), (second, joined_second)):
        assert 2 <= len(stream.beats) <= 3, stream.beats  # a busy host's timers run late
        assert stream.beats[0] - joined >= PERIOD - PERIOD / HEARTBEAT_TICKS - 0.01
        gaps = [b - a for a, b in zip(stream.beats, stream.beats[1:], strict=False)]
        assert all(gap > PERIOD * 0.75 for gap in gaps), gaps  # once per period, not more
    wheel.discard(cast(Any, first), first_slot)
    before = len(first.beats)
    await asyncio.sleep(PERIOD * 1.5)
    assert len(first.beats) == before  # gone: no more beats
    assert len(second.beats) > 2  # still beating
    assert wheel._handle is not None
    wheel.discard(cast(Any, second), second_slot)
    assert wheel._handle is None  # an empty wheel has no timer
    wheel.close()


async def test_close_stops_the_timer() -> None:
    wheel = Heartbeats(PERIOD)
    stream = Stream()
    join(wheel, stream)
    wheel.close()
    await asyncio.sleep(PERIOD * 1.5)
    assert stream.beats == []
