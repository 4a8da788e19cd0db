"""WebSocket fan-out: one gateway pod on real Redis against the ceiling of its stack.

Run by ``bench/run.py`` (``make bench``; alone: ``.venv/bin/python bench/run.py --only fanout``).
Its parts are in ``bench/_fanout/`` (its ``__init__`` lists them); this module starts and stops
what they drive.

Two servers are measured one after the other in the same run, by the same load generator:

- **ceiling**: ``bench/_ceiling.py``, a plain Starlette WebSocket route and an HTTP POST route that
  broadcasts what is posted, under uvicorn with uvloop and ``ws="websockets-sansio"``, no Redis;
- **deltagate**: one ``deltagate serve`` pod on the run's private ``redis-server``.

The load generator (``bench/_loadgen.py``, picows on uvloop) runs in processes of its own: two for
the WebSocket subscribers, one for the appender, so the server under test keeps a core to itself
as far as a shared 2-core host allows. Every event carries ``data.sentAt`` (``time.time()`` when
the append request is written); latency is the subscriber's receive time minus that, on the same
host clock, so it spans the append call, Redis, the fan-out and the socket writes.

Phases, per server: RSS of idle subscribed connections (1,000, then 5,000); 1,000 subscribers at
10, 50, 100 and 300 events/s (batches of one over 100 streams), then a search for the highest
rate whose p99 stays under 100 ms; a replay of 100,000 events to one client; 1,000 clients
reconnecting at once, each resuming 1,000 events.
"""

from __future__ import annotations

import importlib.util
import time

import redis.asyncio as aioredis
from _common import Context, raise_nofile
from _fanout import servers
from _fanout.phases import measure
from _fanout.plan import Plan
from _fanout.report import report
from _fanout.rig import Rig
from _fanout.workers import LoadGen


async def main(ctx: Context) -> str:
    if importlib.util.find_spec("picows") is None:
        raise SystemExit("bench/fanout.py needs picows: pip install -e '.[dev]' (or picows)")
    raise_nofile()  # the servers inherit it: 5,000 sockets and more
    started = time.monotonic()
    plan = Plan.of(ctx)
    lg = LoadGen()
    admin = aioredis.Redis(port=ctx.redis_port, decode_responses=True)
    under_test = [servers.ceiling(ctx), servers.pod(ctx)]
    try:
        await lg.start(ctx.python)
        await servers.start(under_test)
        results = await measure(Rig(plan, lg, admin), under_test)
    finally:
        servers.stop(under_test)
        await lg.stop()
        await admin.aclose()
    return report(results, plan, time.monotonic() - started)
