"""How a dispatcher's catch-up is paced by its saves: one ``Dispatcher`` in this process
delivering one subscription of ``bench/webhooks.py``'s log (a hundred events of one stream, then
of the next) to ``_receiver.py``'s receiver in a process of its own, with counters around the
worker's saves and launches.

    python bench/_waves.py [--events N] [--no-save]

Prints this process's CPU per delivery and the rate, and per save: deliveries finished and not
saved, requests in flight, whether a stream's next event waited for it, its round trip. With
``--no-save`` the progress saves are answered at once without Redis (nothing is recorded: an
experiment, not a mode): what the deliveries cost without waiting for saves.

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``); needs a Redis on
``REDIS_URL`` (default ``redis://127.0.0.1:6399/0``, flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import uvloop
from _common import BENCH_DIR  # (first: it puts the repository root on sys.path)
from webhooks import STORE, prefill

from broker import (
    Dispatcher,
    DispatcherOptions,
    EventLog,
    RedisConfig,
    StoreAdmin,
    TargetPolicy,
    WebhookConfig,
    WebhookStore,
    connect,
)
from broker.webhooks import worker
from gateway.process import settle_gc
from tests.harness import free_port

RECEIVER = """
import asyncio, sys
import uvloop
from _receiver import Receiver, Sink
async def main():
    await asyncio.get_running_loop().create_server(lambda: Receiver(Sink()), "127.0.0.1", {port})
    print("ready", flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""


class Delivered:
    """Deliveries recorded by the worker's saves, and waits for a count of them."""

    def __init__(self) -> None:
        self.count = 0
        self._waits: list[tuple[int, asyncio.Event]] = []

    def add(self, n: int) -> None:
        self.count += n
        for wanted, reached in self._waits:
            if self.count >= wanted:
                reached.set()

    async def until(self, wanted: int) -> None:
        reached = asyncio.Event()
        self._waits.append((wanted, reached))
        self.add(0)
        await reached.wait()


def instrument(stats: Counter[str], delivered: Delivered, *, stub_saves: bool) -> None:
    save, launch = worker.Worker._save, worker.Worker._launch

    async def counted_save(self: Any) -> None:
        started = time.perf_counter()
        stats["saves"] += 1
        stats["unsaved"] += self._unsaved
        stats["flying"] += self._flying
        stats["blocked"] += self._window.blocked
        delivered.add(self._unsaved)
        await save(self)
        stats["save_us"] += round((time.perf_counter() - started) * 1e6)

    def counted_launch(self: Any, item: Any) -> None:
        stats["launches"] += 1
        stats["streams"] += self._window.streams
        launch(self, item)

    worker.Worker._save = counted_save  # type: ignore[method-assign]
    worker.Worker._launch = counted_launch  # type: ignore[method-assign]
    if stub_saves:

        async def at_once(*args: Any, **kwargs: Any) -> str:
            return "ok"

        worker.ProgressStore.progress = at_once  # type: ignore[method-assign]


async def main(events: int, stub_saves: bool) -> None:
    stats: Counter[str] = Counter()
    delivered = Delivered()
    instrument(stats, delivered, stub_saves=stub_saves)
    redis = connect(RedisConfig(url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6399/0")))
    await redis.flushall()
    await StoreAdmin(redis).create(STORE)
    await prefill(EventLog(redis), events)
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER.format(port=port)],
        cwd=BENCH_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        loopback = TargetPolicy(allowed=(ipaddress.ip_network("127.0.0.0/8"),))
        dispatcher = Dispatcher(redis, DispatcherOptions(targets=loopback))
        settle_gc()
        running = asyncio.get_running_loop().create_task(dispatcher.run())
        config = WebhookConfig.build(event_filter="*", url=f"http://127.0.0.1:{port}/w")
        await WebhookStore(redis).create(STORE, config, position="earliest")
        await delivered.until(events // 10)  # (start-up: the subscription found, connections)
        stats.clear()
        first, cpu, wall = delivered.count, time.process_time(), time.perf_counter()
        await delivered.until(events)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await dispatcher.close()
        await running
    finally:
        receiver.kill()
        await redis.aclose()
    n, saves, launches = delivered.count - first, stats["saves"], stats["launches"]
    print(
        f"{n} deliveries, {n / wall:,.0f}/s, {cpu / n * 1e6:.1f} us of CPU each"
        f"{' (saves stubbed out)' if stub_saves else ''}\n"
        f"per save ({saves}): {stats['unsaved'] / saves:.1f} finished and not saved, "
        f"{stats['flying'] / saves:.1f} in flight, a stream waiting in "
        f"{stats['blocked'] / saves:.0%}, {stats['save_us'] / saves:.0f} us round trip\n"
        f"per launch ({launches}): {stats['streams'] / launches:.1f} streams in the window"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--no-save", action="store_true", help="answer saves at once")
    args = parser.parse_args()
    uvloop.run(main(args.events, args.no_save))
