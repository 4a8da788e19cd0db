"""The read window's ordering rule: a finished stream head holds its stream until its progress is
saved, so a crash repeats at most the last event of each stream and a receiver never sees a
stream's older event after a newer one (the worker's batched save relies on it)."""

from __future__ import annotations

import random

from broker.types import LoggedEvent
from broker.webhooks.window import Window


def event(position: int, stream: str) -> LoggedEvent:
    return LoggedEvent(position, stream, "order.placed", f'{{"globalPosition":{position}}}')


def ready(window: Window) -> list[int]:
    out = []
    while window.has_ready:
        out.append(window.pop_ready().position)
    return out


def test_a_finished_head_holds_its_stream_until_released() -> None:
    window = Window()
    for position, stream in [(1, "a"), (2, "b"), (3, "a"), (4, "a")]:
        window.add(event(position, stream), f"e{position}")
    first, second = window.pop_ready(), window.pop_ready()
    assert (first.position, second.position) == (1, 2)
    window.complete(first)
    assert not window.has_ready, "3 waits for 1's save"
    assert window.blocked
    window.complete(second)  # b has nothing behind it: finishing it blocks nothing new
    held = window.take_held()
    assert [item.position for item in held] == [1, 2]
    assert not window.has_ready, "taken for a save on its way is not saved yet"
    window.release(held)
    assert not window.blocked
    third = window.pop_ready()
    assert third.position == 3 and not window.has_ready, "one head per stream"
    window.complete(third)
    window.release(window.take_held())
    assert ready(window) == [4]


def test_an_event_read_while_its_stream_is_held_waits_for_the_save() -> None:
    window = Window()
    window.add(event(1, "a"), "e1")
    head = window.pop_ready()
    window.complete(head)
    assert not window.blocked, "nothing behind it yet"
    window.add(event(2, "a"), "e2")
    assert not window.has_ready and window.blocked
    window.release(window.take_held())
    assert ready(window) == [2]
    assert window.finished_below(2) == 1


def test_a_retry_blocks_its_stream_only() -> None:
    window = Window()
    for position, stream in [(1, "a"), (2, "a"), (3, "b")]:
        window.add(event(position, stream), f"e{position}")
    a1, b3 = window.pop_ready(), window.pop_ready()
    window.wait(a1, not_before=10.0)
    window.complete(b3)
    window.release(window.take_held())
    window.due(5.0)
    assert not window.has_ready
    window.due(10.0)
    assert ready(window) == [1]


def test_blocked_is_always_what_the_held_heads_say() -> None:
    """``blocked`` is counted as the window changes; at every step of random reads,
    completions, saves taken and saves done it equals its definition: a held head, not yet
    taken by a save, has a successor in its stream's queue."""
    rng = random.Random(7)
    window = Window()
    position = 0
    flying: list = []
    taken: list = []
    for _ in range(5000):
        step = rng.random()
        if step < 0.35:
            position += 1
            window.add(event(position, f"s{rng.randrange(6)}"), f"e{position}")
        elif step < 0.6 and window.has_ready:
            flying.append(window.pop_ready())
        elif step < 0.8 and flying:
            window.complete(flying.pop(rng.randrange(len(flying))))
        elif step < 0.9 and not taken:
            taken = window.take_held()
        elif taken:
            window.release(taken)
            taken = []
        expected = any(
            len(window._streams[item.stream_id]) > 1  # (the definition, read from inside)
            for item in window._held
        )
        assert window.blocked == expected
