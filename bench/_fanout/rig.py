"""What every phase of the fan-out benchmark drives: the plan, the load generator processes, and
an admin client of the run's Redis (its CPU clock)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from broker import StoreAdmin, StoreAlreadyExists

from .plan import Plan
from .workers import LoadGen

if TYPE_CHECKING:
    from .servers import Server


@dataclass(frozen=True)
class Rig:
    plan: Plan
    lg: LoadGen
    admin: aioredis.Redis

    async def settle(self, factor: float) -> None:
        """Pause ``factor`` times the plan's settling pause, to let a server settle."""
        await asyncio.sleep(factor * self.plan.settle)

    async def make_store(self, server: Server, store: str) -> None:
        """Create ``store`` for a deltagate server, as an operator would: its subscribers' key
        is read-only, and a read-only key never creates a store (DELTAGATE_AUTO_CREATE_STORES
        needs write or manage permission)."""
        if server.keys is not None:
            with contextlib.suppress(StoreAlreadyExists):
                await StoreAdmin(self.admin).create(store)
