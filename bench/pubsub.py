"""What it costs a process to hear an event: CPU per pub/sub message of one listener
(``broker.pubsub.Listener``, what every pod and dispatcher runs) on its lean connection against
redis-py's ``PubSub``, at a trickle and at a busy store's rate.

Every pod hears every append of the stores it serves, so this cost is paid per event and per pod
(``bench/pods.py`` measures it whole, inside a pod, where the host's noise hides its parts). Here
the listener runs alone in its own process (``bench/_listener.py``), subscribed to one channel;
this process publishes ~360-byte messages (an announcement's size) paced at the rate, and the
two connections alternate.
"""

from __future__ import annotations

import asyncio
import json
import time

import redis.asyncio as aioredis
from _common import BENCH_DIR, Context, Spread, num, progress, table

CONNECTIONS = ("lean", "redis-py")
RATES = (300, 3000)
PAYLOAD = "x" * 360


async def run_once(ctx: Context, connection: str, rate: int) -> float:
    """CPU microseconds per message of a listener process at ``rate`` messages/s."""
    warmup = int(rate * ctx.warmup)
    messages = int(rate * ctx.duration)
    proc = await asyncio.create_subprocess_exec(
        ctx.python,
        str(BENCH_DIR / "_listener.py"),
        *map(str, (ctx.redis_port, connection, warmup, messages)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise RuntimeError(f"_listener.py: {line!r} {(await proc.stderr.read())[-500:]!r}")
        redis = aioredis.Redis(port=ctx.redis_port)
        try:
            started = time.perf_counter()
            for i in range(warmup + messages):
                pause = started + i / rate - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                await redis.publish("bench-pubsub", PAYLOAD)
        finally:
            await redis.aclose()
        out = await asyncio.wait_for(proc.stdout.readline(), 60)
        got = json.loads(out)
        return float(got["cpu"]) / int(got["messages"]) * 1e6
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def main(ctx: Context) -> str:
    runs: dict[tuple[str, int], list[float]] = {(c, r): [] for c in CONNECTIONS for r in RATES}
    for rep in range(ctx.repeats):
        for rate in RATES:
            for connection in CONNECTIONS:
                us = await run_once(ctx, connection, rate)
                runs[connection, rate].append(us)
                progress(f"pubsub {rep + 1}/{ctx.repeats} {connection} at {rate}/s: {us:.1f} us")
    rows = []
    for rate in RATES:
        lean, old = (Spread.of(runs[c, rate]) for c in CONNECTIONS)
        rows.append(
            [f"{num(rate)}/s", lean.text(1, bold=True), old.text(1),
             f"{lean.median / old.median:.2f}x"]
        )  # fmt: skip
    return "\n\n".join(
        [
            "## What a process pays to hear an event",
            "One `broker.pubsub.Listener` alone in its own process, subscribed to one channel; "
            f"~{len(PAYLOAD)}-byte messages published to it paced at the rate from another "
            f"process; {ctx.warmup:g} s unmeasured, then {ctx.duration:g} s measured, the two "
            f"connections alternating ({ctx.runs}). `lean` is `broker.pubsub.LeanPubSub` (an "
            "asyncio protocol parsed by hiredis: what pods and dispatchers use on one Redis "
            "server over plain TCP); `redis-py` is redis-py's `PubSub` (kept for a Cluster, TLS, "
            "Unix sockets). Listener CPU per message:",
            table(["rate", "lean, us", "redis-py, us", "lean / redis-py"], rows),
        ]
    )
