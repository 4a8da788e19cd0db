"""The fan-out benchmark's phases, run in turn on both servers: RSS of idle subscribed
connections, the rate phases (``rates``), a replay of many events to one client, and a reconnect
storm. Both servers run side by side (the idle one costs nothing) and each phase alternates
between them, so a burst of other work on the shared host hits both alike."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
from _common import progress

from .plan import (
    IDLE_COUNTS,
    REPLAY_BATCH,
    REPLAY_EVENTS,
    STORM_CLIENTS,
    STORM_EVENTS,
)
from .rates import rates
from .results import Idle, Result, Storm
from .rig import Rig
from .servers import CEILING, Server


async def measure(rig: Rig, servers: list[Server]) -> list[Result]:
    """Every phase on every server; a server that died on the way fails the run."""
    results = [Result(s) for s in servers]
    for r in results:
        r.idle = await idle(rig, r.server)
    await rates(rig, results)
    await replays(rig, results)
    for r in results:
        r.storm = await storm(rig, r.server)
    for r in results:
        r.server.alive()
        if r.server.name == CEILING:
            r.notes += await ceiling_notes(r.server)
    return results


async def ceiling_notes(server: Server) -> list[str]:
    """What the ceiling dropped in all: the frames its full queues refused."""
    async with httpx.AsyncClient() as http:
        dropped = (await http.get(f"http://127.0.0.1:{server.port}/stats")).json()
    if not dropped["dropped"]:
        return []
    return [
        f"The ceiling dropped {dropped['dropped']:,} frames in all (its queues "
        "were full: the steps where it fell behind)."
    ]


# -- idle connections -----------------------------------------------------------------------


async def idle(rig: Rig, server: Server) -> Idle:
    lg = rig.lg
    # Warm the server's code paths (imports, first store, first subscription) first.
    await lg.connect("warm", server.url("idle"), 20)
    await lg.appender.call("bulk", port=server.port, store="idle", total=20, batch=1, conns=1)
    await lg.close("warm")
    await rig.settle(1.0)
    base = server.rss()
    rss: dict[int, int] = {}
    seconds: dict[int, float] = {}
    refused = failed = opened = 0
    for count in IDLE_COUNTS:
        started = time.monotonic()
        got = await lg.connect("idle", server.url("idle"), count - opened, concurrency=50)
        seconds[count] = time.monotonic() - started
        refused += got["refused"]
        failed += got["failed"]
        opened = count
        await rig.settle(1.5)
        rss[count] = server.rss()
        progress(
            f"{server.name}: {count} idle connections, RSS "
            f"{(rss[count] - base) / count / 1024:.1f} KiB each "
            f"(opened in {seconds[count]:.1f} s, {got['refused']} refused and retried)"
        )
    await lg.close("idle")
    await rig.settle(1.0)
    return Idle(base, rss, seconds, refused, failed)


# -- replay ---------------------------------------------------------------------------------


async def replays(rig: Rig, results: list[Result]) -> None:
    """Fill each server's replay store, then the plan's replay runs, alternating servers."""
    for r in results:
        bulk = await rig.lg.appender.call(
            "bulk",
            600,
            port=r.server.port,
            store="replay",
            total=REPLAY_EVENTS,
            batch=REPLAY_BATCH,
        )
        r.replay.append_s = bulk["seconds"]
        progress(f"{r.name}: appended {REPLAY_EVENTS:,} events in {bulk['seconds']:.1f} s")
    for run in range(rig.plan.replay_runs):
        for r in results:
            await replay(rig, r, f"replay-{run}")


async def replay(rig: Rig, result: Result, group: str) -> None:
    """One client subscribes from ``earliest``: seconds from ``subscribe`` to ``caughtUp``."""
    server, replay = result.server, result.replay
    subscriber = rig.lg.subs[0]
    cpu0 = server.cpu()
    got = await subscriber.call(
        "connect",
        150,
        group=group,
        url=server.url("replay"),
        count=1,
        position="earliest",
        timeout=120,
        wait_caught=True,
    )
    replay.server_cpu.append(server.cpu() - cpu0)
    await subscriber.call("close", group=group)
    if not got["caught"]:
        raise RuntimeError(f"{server.name}: replay did not catch up: {got}")
    replay.seconds.append(got["last_caught"] - got["first_sub_sent"])
    replay.events.append(got["events_min"])
    progress(f"{server.name}: replay {replay.events[-1]:,} events in {replay.seconds[-1]:.2f} s")


# -- reconnect storm ------------------------------------------------------------------------


async def storm(rig: Rig, server: Server) -> Storm:
    """Every client leaves, the store moves on, every client comes back at once."""
    lg = rig.lg
    port = server.port
    await lg.appender.call("bulk", port=port, store="storm", total=STORM_EVENTS, batch=1000)
    head = await leave(rig, server)
    # Everyone is gone; the store moves on by STORM_EVENTS while they are away.
    await lg.appender.call("bulk", port=port, store="storm", total=STORM_EVENTS, batch=1000)
    await rig.settle(1.5)
    cpu0 = server.cpu()
    started = time.time()
    got = await lg.connect(
        "storm-back",
        server.url("storm"),
        STORM_CLIENTS,
        position=head,
        concurrency=STORM_CLIENTS,
        timeout=60,
        wait_caught=True,
    )
    cpu = server.cpu() - cpu0
    await lg.close("storm-back")
    result = Storm(
        clients=STORM_CLIENTS,
        caught=got["caught"],
        seconds=(got["last_caught"] - started) if got["caught"] else math.inf,
        events_min=got["events_min"],
        events_max=got["events_max"],
        connect_s=got["seconds"],
        refused=got["refused"],
        server_cpu=cpu,
        errors=got["errors"],
    )
    progress(
        f"{server.name}: storm: {result.caught}/{result.clients} caught up in "
        f"{result.seconds:.2f} s (events each {result.events_min}..{result.events_max}, "
        f"{result.refused} refused and retried)"
    )
    await rig.settle(1.0)
    return result


async def leave(rig: Rig, server: Server) -> Any:
    """The storm's clients subscribe from ``latest`` and disconnect: the head they all saw."""
    first = await rig.lg.connect("storm", server.url("storm"), STORM_CLIENTS, concurrency=50)
    positions = first["positions"]
    if len(positions) != 1:
        raise RuntimeError(f"{server.name}: storm clients saw heads {positions}")
    await rig.lg.close("storm")
    return positions[0]
