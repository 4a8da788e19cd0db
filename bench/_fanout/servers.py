"""The two servers under test, each a process of its own on a free port: the **ceiling**
(``bench/_ceiling.py``, Starlette + uvicorn, no Redis) and **deltagate** (one ``deltagate serve``
pod on the run's Redis), started through ``tests.harness`` like every deltagate process of the
tests and benchmarks. ``Server`` is what the phases read of one: its URL, CPU and RSS."""

from __future__ import annotations

from pathlib import Path

from _common import BENCH_DIR, POD_ENV, Context, deltagate, launch, process_cpu

from tests.harness import ServerProcess, free_port

CEILING = "ceiling"
READY_SECONDS = 30.0
STOP_SECONDS = 20.0


def rss_of(pid: int) -> int:
    """Resident set size in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Server:
    """A server under test: its process and what the phases read of it. The file-descriptor
    limit its sockets need is inherited: ``bench/fanout.py`` raises its own first."""

    def __init__(self, name: str, process: ServerProcess, *, on_redis: bool) -> None:
        self.name = name
        self.process = process
        self.on_redis = on_redis
        """Whether Redis' CPU counts as this server's."""

    @property
    def port(self) -> int:
        return self.process.port

    def alive(self) -> None:
        self.process.check_running()

    def url(self, store: str) -> str:
        return f"ws://127.0.0.1:{self.port}/event-stores/{store}/events/ws"

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def rss(self) -> int:
        return rss_of(self.process.pid)


class CeilingProcess(ServerProcess):
    """``bench/_ceiling.py`` on a free port."""

    name = "ceiling (Starlette + uvicorn websockets-sansio, no Redis)"

    def __init__(self, ctx: Context) -> None:
        port = free_port()
        super().__init__(port=port, log_path=ctx.logs / f"ceiling-{port}.log")
        self.python = ctx.python

    def argv(self) -> list[str]:
        return [self.python, str(BENCH_DIR / "_ceiling.py"), str(self.port)]


def ceiling(ctx: Context) -> Server:
    return Server(CEILING, CeilingProcess(ctx), on_redis=False)


def pod(ctx: Context) -> Server:
    return Server("deltagate", deltagate(ctx, "serve", POD_ENV), on_redis=True)


async def start(servers: list[Server]) -> None:
    """Start the servers one after the other, each ready before the next starts."""
    for server in servers:
        await launch(server.process, READY_SECONDS)


def stop(servers: list[Server]) -> None:
    for server in servers:
        server.process.stop(timeout=STOP_SECONDS)
