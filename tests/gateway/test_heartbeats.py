"""The pod's heartbeat wheel (gateway/heartbeats.py ``Heartbeats``: SSE keep-alive comments and
WebSocket keep-alive pings): every member beats once per period, the first time no sooner than a
period less one tick after it joined; a member that left beats no more, and one that leaves
during its own beat (its connection ended) does not disturb the others; the timer runs only
while the wheel holds a member."""

from __future__ import annotations

import asyncio

from gateway.heartbeats import TICKS, Heartbeats

PERIOD = 0.2


class Stream:
    """Records its beats (the ``keep_alive`` of an ``SseStream`` or a WebSocket protocol)."""

    def __init__(self) -> None:
        self.beats: list[float] = []

    def keep_alive(self) -> None:
        self.beats.append(asyncio.get_running_loop().time())


def join(wheel: Heartbeats, stream: Stream) -> int:
    return wheel.add(stream)


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
        assert stream.beats[0] - joined >= PERIOD - PERIOD / TICKS - 0.01
        gaps = [b - a for a, b in zip(stream.beats, stream.beats[1:], strict=False)]
        assert all(gap > PERIOD * 0.75 for gap in gaps), gaps  # once per period, not more
    wheel.discard(first, first_slot)
    before = len(first.beats)
    await asyncio.sleep(PERIOD * 1.5)
    assert len(first.beats) == before  # gone: no more beats
    assert len(second.beats) > 2  # still beating
    assert wheel._handle is not None
    wheel.discard(second, second_slot)
    assert wheel._handle is None  # an empty wheel has no timer
    wheel.close()


async def test_close_stops_the_timer() -> None:
    wheel = Heartbeats(PERIOD)
    stream = Stream()
    join(wheel, stream)
    wheel.close()
    await asyncio.sleep(PERIOD * 1.5)
    assert stream.beats == []


class Leaving(Stream):
    """Leaves the wheel during its first beat, as a WebSocket whose ping write ended it does."""

    def __init__(self, wheel: Heartbeats) -> None:
        super().__init__()
        self.wheel = wheel
        self.slot = join(wheel, self)

    def keep_alive(self) -> None:
        super().keep_alive()
        self.wheel.discard(self, self.slot)


async def test_a_member_leaving_during_its_beat_leaves_the_others_beating() -> None:
    wheel = Heartbeats(PERIOD)
    staying = [Stream() for _ in range(3)]
    for stream in staying[:1]:
        join(wheel, stream)
    leaving = Leaving(wheel)  # the same slot as the others, between them
    for stream in staying[1:]:
        join(wheel, stream)
    # Two beats each (however late a busy host runs the timer: up to 25 periods).
    for _ in range(250):
        if all(len(stream.beats) >= 2 for stream in staying):
            break
        await asyncio.sleep(PERIOD / 10)
    assert all(len(stream.beats) >= 2 for stream in staying), [s.beats for s in staying]
    assert len(leaving.beats) == 1
    wheel.close()
