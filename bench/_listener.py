"""A process that only listens: one ``broker.pubsub.Listener`` on one channel, its own process so
its CPU is its own.

    python bench/_listener.py REDIS_PORT CONNECTION WARMUP MESSAGES

Not a benchmark itself (``run.py`` skips modules whose name starts with ``_``); run by
``bench/pubsub.py``. ``CONNECTION`` is ``lean`` (``broker.pubsub.LeanPubSub``, what a pod uses on
one Redis server) or ``redis-py`` (redis-py's ``PubSub``, what it used before and still uses on a
Cluster). Prints ``ready`` once subscribed; after ``WARMUP`` messages it starts its clocks, and
after ``MESSAGES`` more it prints one JSON line (messages, CPU seconds, seconds) and exits.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import uvloop

from broker import RedisConfig, connect, pubsub

CHANNEL = "bench-pubsub"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Owner:
    def __init__(self, warmup: int, messages: int) -> None:
        self.warmup, self.messages, self.heard = warmup, messages, 0
        self.started = (0.0, 0.0)
        self.done = asyncio.get_running_loop().create_future()

    async def announced(self, channel: str, data: str) -> None:
        self.heard += 1
        if self.heard == self.warmup:
            self.started = (cpu(), time.perf_counter())
        elif self.heard == self.warmup + self.messages:
            self.done.set_result((cpu() - self.started[0], time.perf_counter() - self.started[1]))

    async def tick(self) -> None:
        pass


async def main(port: int, connection: str, warmup: int, messages: int) -> None:
    if connection == "redis-py":
        pubsub.plain_server = lambda client: None  # as on a Cluster, TLS or a Unix socket
    redis = connect(RedisConfig(url=f"redis://127.0.0.1:{port}/0"))
    owner = Owner(warmup, messages)
    listener = pubsub.Listener(redis, owner, tick_interval=1.0, name="bench listener")
    await listener.start()
    await listener.subscribe(CHANNEL)
    expected = pubsub.LeanPubSub if connection == "lean" else object
    assert isinstance(listener._pubsub, expected), type(listener._pubsub)
    print("ready", flush=True)
    cpu_seconds, seconds = await asyncio.wait_for(owner.done, 300)
    print(json.dumps({"messages": messages, "cpu": cpu_seconds, "seconds": seconds}), flush=True)
    await listener.close()
    await redis.aclose()


if __name__ == "__main__":
    port, connection, warmup, messages = sys.argv[1:5]
    uvloop.run(main(int(port), connection, int(warmup), int(messages)))
