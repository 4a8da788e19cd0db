"""WebSocket fan-out: one deltagate pod as deployed, beside the bare Python ceiling, a queued
Python reference and two Node peers, all in the same run.

Run by ``bench/run.py`` (``make bench``; alone: ``.venv/bin/python bench/run.py --only fanout``).
Its parts are in ``bench/_fanout/`` (its ``__init__`` lists them); this module starts and stops
what they drive. The servers (``_fanout/servers.py``): bare Starlette (the ceiling), queued
Starlette, deltagate (auth on, real Redis), Node ``ws`` and Node socket.io with the Redis adapter.

The load generator (``bench/_loadgen.py``, picows on uvloop) runs in processes of its own: two for
the WebSocket subscribers, one for the appender; their CPU is reported. Every event carries
``data.sentAt`` (``time.time()`` when the append request is written); latency is the subscriber's
receive time minus that, on the same host clock: append call + fan-out + socket writes.

Phases, every one repeated ``plan.repeats`` times alternating servers:

1. RSS per idle connection (1,000, then 5,000), on a fresh process per server and repetition;
2. 1,000 subscribers at each of the plan's rates (30 and 100 ev/s the headline), every server,
   plus deltagate with a complex-pattern filter mix;
3. 100 subscribers flat out (an offered rate no server keeps up with);
4. a replay of 100,000 events to one client and a reconnect storm (1,000 clients resuming 1,000
   events each), on the servers that replay (deltagate and the queued reference);
5. 200 stalled readers on deltagate (its RSS).

``--rates 30,100`` (with ``--servers deltagate`` or any other subset): only phase 2's steps, at
those rates, for quick before/after pairs.

Figures: ``fanout-cpu.png``, ``fanout-p99.png`` and ``fanout-memory.png`` beside the output.
"""

from __future__ import annotations

import importlib.util
import time

import redis.asyncio as aioredis
from _common import Context, api_keys, raise_nofile
from _fanout import phases, servers
from _fanout.plan import (
    FLAT_RATE,
    FLAT_SUBSCRIBERS,
    MIX_FILTERS,
    STORM_CLIENTS,
    STORM_EVENTS,
    SUBSCRIBERS,
    Plan,
)
from _fanout.rates import Load, scenario
from _fanout.report import report, steps_table
from _fanout.results import Measured
from _fanout.rig import Rig
from _fanout.workers import LoadGen

MIX = "deltagate, `*a*b*` filter mix"


async def main(ctx: Context) -> str:
    if importlib.util.find_spec("picows") is None:
        raise SystemExit("bench/fanout.py needs picows: pip install -e '.[dev]' (or picows)")
    raise_nofile()  # the servers inherit it: 5,000 sockets and more
    started = time.monotonic()
    plan = Plan.of(ctx)
    keys = await api_keys(ctx)
    names, notes = servers.kinds(ctx)
    if ctx.servers:
        names = [n for n in names if n in ctx.servers]
    lg = LoadGen()
    admin = aioredis.Redis(port=ctx.redis_port, decode_responses=True)
    rig = Rig(plan, lg, admin)
    under_test = [servers.make(ctx, name, keys) for name in names]
    try:
        await lg.start(ctx.python)
        idle = {} if ctx.rates else await phases.idle(rig, ctx, keys, names)
        for server in under_test:
            await server.start()
        if ctx.rates:
            # --rates: the 1,000-subscriber steps only (quick before/after pairs).
            loads = [Load(s, "fanout", SUBSCRIBERS, s.name) for s in under_test]
            steps = await scenario(rig, loads, ctx.rates)
            return "\n\n".join(["## WebSocket fan-out, rate steps only", steps_table(steps)])
        pod = next(s for s in under_test if s.name == servers.DELTAGATE)
        loads = [Load(s, "fanout", SUBSCRIBERS, s.name) for s in under_test]
        loads.append(Load(pod, "fanout-mix", SUBSCRIBERS, MIX, MIX_FILTERS))
        rates = await scenario(rig, loads, plan.rates)
        flat = [Load(s, "flat", FLAT_SUBSCRIBERS, s.name) for s in under_test]
        flat_out = await scenario(rig, flat, [FLAT_RATE], fresh=True)
        replaying = [s for s in under_test if s.replays]
        replays = await phases.replays(rig, replaying)
        storms = {s.name: [] for s in replaying}
        for _ in range(plan.repeats):
            for s in replaying:
                storms[s.name].append(await phases.storm(rig, s, STORM_CLIENTS, STORM_EVENTS))
        stalled = await phases.stalled(rig, pod)
        for server in under_test:
            server.alive()
    finally:
        for server in under_test:
            server.stop()
        await lg.stop()
        await admin.aclose()
    measured = Measured(
        names, plan.idle_counts, idle, rates, flat_out, replays, storms, stalled, notes
    )
    return report(measured, plan, ctx, time.monotonic() - started)
