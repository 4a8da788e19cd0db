"""What every phase of the fan-out benchmark drives: the plan, the load generator processes, and
an admin client of the run's Redis (its CPU clock)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis

from .plan import Plan
from .workers import LoadGen


@dataclass(frozen=True)
class Rig:
    plan: Plan
    lg: LoadGen
    admin: aioredis.Redis

    async def settle(self, factor: float) -> None:
        """Pause ``factor`` times the plan's settling pause, to let a server settle."""
        await asyncio.sleep(factor * self.plan.settle)
