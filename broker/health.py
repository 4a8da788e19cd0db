"""What a deployment's Redis must be for the log to be safe, checked: its memory and its eviction
policy (sampled in the background by every pod, for readiness and metrics) and, for
``deltagate doctor``, its persistence.

A Redis whose ``maxmemory-policy`` is not ``noeviction`` deletes keys when it is full, log entries
included, silently: positions vanish with no error anywhere. A pod refuses to be ready on such a
Redis and says why. A full Redis under ``noeviction`` refuses writes instead: appends answer 507
(``broker.log``), reads and live delivery go on, and the memory metrics show it coming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from .aio import cancel_and_wait
from .errors import BrokerError
from .redis import TRANSIENT, call, sharded

log = logging.getLogger("deltagate.health")

SAFE_POLICY = "noeviction"


@dataclass(frozen=True, slots=True)
class Memory:
    used: int
    """Bytes Redis uses (the largest of a Cluster's nodes)."""
    limit: int
    """``maxmemory`` (0: no limit; then the machine's memory is the limit)."""
    policies: tuple[str, ...]
    """``maxmemory-policy`` of each node."""

    @property
    def unsafe_policy(self) -> str | None:
        """A policy that would evict log entries, if any node has one."""
        return next((p for p in self.policies if p != SAFE_POLICY), None)

    @property
    def problem(self) -> str | None:
        """What makes this Redis unsafe for the log, in words (None: nothing)."""
        policy = self.unsafe_policy
        return None if policy is None else policy_problem(policy)

    @property
    def headroom(self) -> float | None:
        """The share of ``maxmemory`` still free (None without a limit)."""
        return None if not self.limit else max(0.0, 1.0 - self.used / self.limit)


async def nodes_info(client: Any, section: str) -> list[dict[str, Any]]:
    """INFO ``section`` of one server, or of every node of a Cluster (replicas too: one may
    become a master). Raises Unavailable."""
    # A Cluster client sends INFO to one node unless told otherwise.
    where = {"target_nodes": client.ALL_NODES} if sharded(client) else {}
    reply = await call(client.info(section, **where))
    if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
        return list(reply.values())
    return [reply]


async def memory(client: Any) -> Memory:
    """Redis' memory and eviction policy. Raises Unavailable."""
    nodes = await nodes_info(client, "memory")
    return Memory(
        used=max(int(n.get("used_memory", 0)) for n in nodes),
        limit=max(int(n.get("maxmemory", 0)) for n in nodes),
        policies=tuple(str(n.get("maxmemory_policy", SAFE_POLICY)) for n in nodes),
    )


def policy_problem(policy: str) -> str:
    return (
        f"Redis has maxmemory-policy {policy}: when full it would evict keys, log entries "
        f"included, without a word. Set maxmemory-policy {SAFE_POLICY} (CONFIG SET "
        f"maxmemory-policy {SAFE_POLICY}, and in redis.conf)"
    )


async def eviction_problem(client: Any) -> str | None:
    """What is wrong with Redis' eviction policy for a log (None: nothing), asked now: for a
    command that writes without a pod's ``RedisWatch`` (``deltagate import``). Raises
    Unavailable."""
    return (await memory(client)).problem


class RedisWatch:
    """Samples Redis' memory every ``interval`` seconds; ``problem`` says what makes the pod
    not ready (None: nothing). ``start()``, then ``close()``."""

    def __init__(self, client: Any, interval: float = 5.0) -> None:
        self._client = client
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.memory: Memory | None = None
        self.problem: str | None = None

    async def start(self) -> None:
        with contextlib.suppress(BrokerError, *TRANSIENT):
            await self.sample()  # before the pod says it is ready
        self._task = asyncio.get_running_loop().create_task(self._run(), name="redis watch")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])

    async def sample(self) -> None:
        self.memory = await memory(self._client)
        problem = self.memory.problem
        if problem != self.problem and problem is not None:
            log.error("redis is not safe for the log", extra={"problem": problem})
        self.problem = problem

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sample()
            except BrokerError:
                pass  # readiness already says Redis is unreachable
