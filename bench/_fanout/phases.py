"""The fan-out benchmark's phases besides the rate scenarios (``rates``): RSS of idle subscribed
connections, a replay of many events to one client, a reconnect storm, and stalled readers.

Memory is measured on a fresh process per repetition: a server that has had connections and
closed them keeps (and reuses) the memory they had, so a second round on the same process would
show less growth than a first. The other phases run on the long-lived servers.
"""

from __future__ import annotations

import math
import time
from typing import Any

from _common import ApiKeys, Context, progress

from . import servers
from .plan import (
    REPLAY_BATCH,
    REPLAY_EVENTS,
    STALLED_READERS,
)
from .results import Idle, Replay, Stalled, Storm
from .rig import Rig
from .servers import Server

# -- idle connections -----------------------------------------------------------------------


async def idle(rig: Rig, ctx: Context, keys: ApiKeys, names: list[str]) -> dict[str, Idle]:
    """RSS per idle connection of each server, a fresh process per server and repetition,
    alternating servers."""
    results = {name: Idle() for name in names}
    for _ in range(rig.plan.repeats):
        for name in names:
            server = servers.make(ctx, name, keys)
            await server.start()
            try:
                await idle_once(rig, server, results[name])
            finally:
                server.stop()
    return results


async def connect(rig: Rig, server: Server, group: str, store: str, n: int, **options: Any) -> Any:
    """``n`` subscribers of ``server``'s ``store`` (its protocol, its read key)."""
    await rig.make_store(server, store)
    return await rig.lg.connect(
        group,
        server.url(store),
        n,
        proto=server.proto,
        headers=server.read_headers,
        **options,
    )


async def idle_once(rig: Rig, server: Server, result: Idle) -> None:
    lg = rig.lg
    # Warm the server's code paths (imports, first store, first subscription) first.
    await connect(rig, server, "warm", "idle", 20)
    await lg.appender.call(
        "bulk", port=server.port, store="idle", total=20, batch=1, conns=1,
        headers=server.write_headers,
    )  # fmt: skip
    await lg.close("warm")
    await rig.settle(1.0)
    base = server.rss()
    result.base.append(base)
    opened = 0
    for count in rig.plan.idle_counts:
        started = time.monotonic()
        got = await connect(rig, server, "idle", "idle", count - opened, concurrency=200)
        seconds = time.monotonic() - started
        result.refused += got["refused"]
        if got["failed"]:
            raise RuntimeError(f"{server.name}: {got['failed']} idle connections failed")
        opened = count
        await rig.settle(1.5)
        per_conn = (server.rss() - base) / count
        result.add(count, per_conn, seconds)
        progress(
            f"{server.name}: {count} idle connections, RSS {per_conn / 1024:.1f} KiB each "
            f"(opened in {seconds:.1f} s, {got['refused']} refused and retried)"
        )
    await lg.close("idle")


# -- replay ---------------------------------------------------------------------------------


async def replays(rig: Rig, under_test: list[Server]) -> dict[str, Replay]:
    """Fill each server's replay store, then the replay runs, alternating servers."""
    results = {s.name: Replay() for s in under_test}
    for server in under_test:
        bulk = await rig.lg.appender.call(
            "bulk",
            600,
            port=server.port,
            store="replay",
            total=REPLAY_EVENTS,
            batch=REPLAY_BATCH,
            headers=server.write_headers,
        )
        results[server.name].append_s = bulk["seconds"]
        progress(f"{server.name}: appended {REPLAY_EVENTS:,} events in {bulk['seconds']:.1f} s")
    for run in range(rig.plan.repeats):
        for server in under_test:
            await replay(rig, server, "replay", f"replay-{run}", results[server.name])
    return results


async def replay(rig: Rig, server: Server, store: str, group: str, result: Replay) -> None:
    """One client subscribes from ``earliest``: seconds from ``subscribe`` to ``caughtUp``."""
    subscriber = rig.lg.subs[0]
    cpu0 = server.cpu()
    got = await subscriber.call(
        "connect",
        150,
        group=group,
        url=server.url(store),
        count=1,
        position="earliest",
        timeout=120,
        wait_caught=True,
        headers=server.read_headers,
    )
    result.server_cpu.append(server.cpu() - cpu0)
    await subscriber.call("close", group=group)
    if not got["caught"]:
        raise RuntimeError(f"{server.name}: replay of {store} did not catch up: {got}")
    result.seconds.append(got["last_caught"] - got["first_sub_sent"])
    result.events.append(got["events_min"])
    progress(
        f"{server.name}: replay of {store}: {result.events[-1]:,} events in "
        f"{result.seconds[-1]:.2f} s"
    )


# -- reconnect storm ------------------------------------------------------------------------

STORM_LIMIT = 90.0
"""Seconds a storm's clients have to reconnect and catch up; the others count as not."""


async def storm(rig: Rig, server: Server, clients: int, events: int, **options: Any) -> Storm:
    """Every client leaves, the store moves on by ``events``, every client comes back at once
    and resumes from where it left. ``options`` go to the load generator (e.g. sources)."""
    lg = rig.lg
    write = {"port": server.port, "store": "storm", "headers": server.write_headers}
    await lg.appender.call("bulk", 600, total=max(events, 100), batch=1000, **write)
    first = await connect(rig, server, "storm", "storm", clients, concurrency=100, **options)
    positions = first["positions"]
    if len(positions) != 1:
        raise RuntimeError(f"{server.name}: storm clients saw heads {positions}")
    await lg.close("storm")
    await lg.appender.call("bulk", 600, total=events, batch=min(events, 1000), **write)
    await rig.settle(1.5)
    cpu0 = server.cpu()
    started = time.time()
    got = await connect(
        rig,
        server,
        "storm-back",
        "storm",
        clients,
        position=positions[0],
        concurrency=clients,
        timeout=STORM_LIMIT,
        wait_caught=True,
        **options,
    )
    cpu = server.cpu() - cpu0
    await lg.close("storm-back")
    result = Storm(
        clients=clients,
        events=events,
        caught=got["caught"],
        seconds=(got["last_caught"] - started) if got["caught"] == clients else math.inf,
        events_min=got["events_min"],
        events_max=got["events_max"],
        connect_s=got["seconds"],
        refused=got["refused"],
        server_cpu=cpu,
        errors=got["errors"],
    )
    progress(
        f"{server.name}: storm: {result.caught}/{clients} caught up in {result.seconds:.2f} s "
        f"(events each {result.events_min}..{result.events_max}, {result.refused} refused and "
        "retried)"
    )
    await rig.settle(1.0)
    return result


# -- stalled readers ------------------------------------------------------------------------


def queued_budget() -> int | None:
    """A pod's DELTAGATE_MAX_QUEUED_BYTES (its default: the bench sets none), if the pod has
    that setting yet (issue 13)."""
    from gateway.settings import Settings

    field = Settings.model_fields.get("max_queued_bytes")
    return None if field is None or field.default is None else int(field.default)


async def stalled(rig: Rig, server: Server, store: str = "replay") -> Stalled:
    """``STALLED_READERS`` connections subscribe from ``earliest`` to a store of
    ``REPLAY_EVENTS`` events and never read: the pod's RSS while they hang on and once they are
    gone. It grows until every reader's socket buffers and outbox are full (or the pod stops
    queueing for them), polled every half second until flat for 3 s (at most 60 s)."""
    base = server.rss()
    started = time.monotonic()
    await connect(rig, server, "stalled", store, STALLED_READERS, position="earliest", stall=True)
    highest, flat_since = server.rss(), time.monotonic()
    while time.monotonic() - flat_since < 3.0 and time.monotonic() - started < 60.0:
        await rig.settle(0.5)
        now = server.rss()
        if now > highest + 2**20:
            flat_since = time.monotonic()
        highest = max(highest, now)
    seconds = time.monotonic() - started
    await rig.lg.close("stalled")
    await rig.settle(3.0)
    closed = server.rss()
    progress(
        f"{server.name}: {STALLED_READERS} stalled readers: RSS {base / 2**20:.0f} -> "
        f"{highest / 2**20:.0f} MiB, {closed / 2**20:.0f} MiB after they closed"
    )
    return Stalled(STALLED_READERS, base, highest, closed, queued_budget(), seconds)
