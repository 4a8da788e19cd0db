"""``gateway.loops.PerLoop``: one object per running loop, made on first use there, a new one in
another loop (the tests run many loops, one after another)."""

from __future__ import annotations

import asyncio

from gateway.loops import PerLoop


def test_each_loop_gets_its_own_made_once() -> None:
    made: list[object] = []

    def make() -> object:
        made.append(object())
        return made[-1]

    per_loop = PerLoop(make)

    async def twice() -> tuple[object, object]:
        return per_loop.get(), per_loop.get()

    first = asyncio.run(twice())
    second = asyncio.run(twice())
    assert first[0] is first[1] and second[0] is second[1]  # once per loop
    assert first[0] is not second[0] and len(made) == 2  # another loop, another one
