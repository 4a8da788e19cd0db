"""``broker.redis.call`` on the failures a Redis Cluster adds: a cluster moving (a failover, a
resharding) is Unavailable (503), as is redis-py's own state going wrong under a dying node;
our own bugs are not hidden."""

from __future__ import annotations

from typing import Any

import pytest
import redis.exceptions as rex

from broker.errors import Unavailable
from broker.redis import call


def raising_inside(module: str, exc: BaseException) -> Any:
    """An awaitable raising ``exc`` from a function of ``module``."""
    scope: dict[str, Any] = {"__name__": module, "exc": exc}
    exec("async def fail():\n    raise exc\n", scope)
    return scope["fail"]()


@pytest.mark.parametrize(
    "exc",
    [
        rex.ClusterError("TTL exhausted."),
        rex.ClusterDownError("CLUSTERDOWN The cluster is down"),
        rex.TryAgainError("TRYAGAIN"),
        rex.MovedError("3999 127.0.0.1:6381"),
        rex.SlotNotCoveredError('Slot "12" is not covered by the cluster.'),
    ],
)
async def test_a_moving_cluster_is_unavailable(exc: Exception) -> None:
    with pytest.raises(Unavailable, match="Cluster is moving"):
        await call(raising_inside("redis.asyncio.cluster", exc))


async def test_redis_pys_state_errors_under_a_dying_node_are_unavailable() -> None:
    lost = AttributeError("'NoneType' object has no attribute 'writelines'")
    with pytest.raises(Unavailable):
        await call(raising_inside("redis.asyncio.connection", lost))
    with pytest.raises(Unavailable):
        await call(raising_inside("redis.asyncio.connection", RuntimeError("handler is closed")))


async def test_our_own_attribute_errors_are_not_hidden() -> None:
    with pytest.raises(AttributeError):
        await call(raising_inside("broker.log", AttributeError("a bug of ours")))
