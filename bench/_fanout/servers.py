"""The servers under test, each a process of its own on a free port of 127.0.0.1, started through
``tests.harness`` like every deltagate process of the tests and benchmarks:

- **bare Starlette** (``bench/_bare.py``): the ceiling, a POST route that sends each frame to every
  socket directly, no Redis;
- **queued Starlette** (``bench/_queued.py``): the second reference, a queue and a writer task per
  connection, replay from memory, no Redis;
- **deltagate**: one ``deltagate serve`` pod as deployed, auth on, on the run's Redis;
- **Node ws** and **Node socket.io** (``bench/peers/server.js``, installed with ``npm ci`` from its
  lock): the outside references; socket.io broadcasts through ``@socket.io/redis-adapter`` on the
  run's Redis.

``Server`` is what the phases read of one: its URLs and protocol, the headers its clients send, its
CPU and RSS (summed over its processes: a server behind nginx is the pods and nginx).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _common import BENCH_DIR, POD_ENV, ApiKeys, Context, deltagate, launch, process_cpu, progress

from tests.harness import ServerProcess, free_port

BARE = "bare Starlette"
QUEUED = "queued Starlette"
DELTAGATE = "deltagate"
DELTAGATE_SSE = "deltagate SSE"
"""A deltagate pod whose subscribers read Server-Sent Events (``bench/sse.py``)."""
NODE_WS = "Node ws"
SOCKETIO = "Node socket.io"
READY_SECONDS = 30.0
STOP_SECONDS = 20.0
PEERS = BENCH_DIR / "peers"

DESCRIPTIONS = {
    BARE: "the ceiling: Starlette + uvicorn (uvloop, httptools, `websockets-sansio`), a POST "
    "route that builds each event's frame once and sends it to every socket directly (no queue, "
    "no task per connection), no Redis (`bench/_bare.py`)",
    QUEUED: "the second reference: the same stack with a bounded queue and a writer task per "
    "connection (never awaits one client in a loop over many), replay from memory, no Redis "
    "(`bench/_queued.py`)",
    DELTAGATE: "one `deltagate serve` pod as deployed: auth on (subscribers carry a "
    "read+connect API key, the appender a write key, both made with `deltagate keys create`), "
    "appends through the HTTP API into the run's Redis, live delivery through Redis pub/sub",
    NODE_WS: "Node `ws` (in-process broadcast: each event's frame built once, the same bytes "
    "written to every socket), no Redis (`bench/peers/server.js ws`)",
    SOCKETIO: "Node Socket.IO 4 with `@socket.io/redis-adapter` on the run's Redis, WebSocket "
    "transport, one room per store, `io.to(store).emit` per event "
    "(`bench/peers/server.js socketio`)",
}


def rss_of(pid: int) -> int:
    """Resident set size in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Server:
    """A server under test: its processes and what the phases read of them. The file-descriptor
    limit its sockets need is inherited: the benchmark raises its own first."""

    name: str
    processes: list[ServerProcess]
    proto: str = "deltagate"
    """What its subscribers speak: ``deltagate`` or ``socketio`` (WebSockets), or ``sse``."""
    keys: ApiKeys | None = None
    """deltagate's API keys (subscribers read, the appender writes); None: no auth."""
    on_redis: bool = False
    """Whether Redis' CPU is part of this server's work."""
    replays: bool = False
    """Whether it serves subscriptions from a past position (replay, reconnect storms)."""
    entry: ServerProcess | None = None
    """The process clients talk to (nginx in front of pods); default: the first."""
    parts: dict[str, Callable[[], list[int]]] = field(default_factory=dict)
    """CPU reported apart, by name: process ids (e.g. "nginx"); the rest is the server's."""

    @property
    def port(self) -> int:
        return (self.entry or self.processes[0]).port

    def alive(self) -> None:
        for p in self.processes:
            p.check_running()

    def url(self, store: str) -> str:
        if self.proto == "socketio":
            return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket&store={store}"
        if self.proto == "sse":
            return f"http://127.0.0.1:{self.port}/event-stores/{store}/events/sse"
        return f"ws://127.0.0.1:{self.port}/event-stores/{store}/events/ws"

    @property
    def read_headers(self) -> dict[str, str] | None:
        return self.keys.read_headers if self.keys else None

    @property
    def write_headers(self) -> dict[str, str] | None:
        return self.keys.write_headers if self.keys else None

    def pids(self) -> list[int]:
        """Every process id of the server (a process with children, nginx, lists its own)."""
        return [i for p in self.processes for i in (p.pids() if hasattr(p, "pids") else [p.pid])]

    def cpu(self) -> float:
        return sum(process_cpu(pid) for pid in self.pids())

    def part_cpu(self) -> dict[str, float]:
        return {name: sum(process_cpu(pid) for pid in pids()) for name, pids in self.parts.items()}

    def rss(self) -> int:
        return sum(rss_of(pid) for pid in self.pids())

    async def start(self) -> None:
        for p in self.processes:
            await launch(p, READY_SECONDS)

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop(timeout=STOP_SECONDS)


class ScriptProcess(ServerProcess):
    """A bench server script (``bench/_bare.py PORT``, ``node bench/peers/server.js MODE PORT``)
    on a free port."""

    def __init__(self, ctx: Context, name: str, argv: list[str]) -> None:
        port = free_port()
        self.name = name
        super().__init__(port=port, log_path=ctx.logs / f"{Path(argv[1]).stem}-{port}.log")
        self.command = argv

    def argv(self) -> list[str]:
        return [*self.command, str(self.port)]


def node_ready() -> str | None:
    """None if the Node peers can run (installing them from the lock first if needed), else
    why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are not installed"
    installed = PEERS / "node_modules" / ".package-lock.json"
    lock = PEERS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        progress("installing the Node peers: npm ci in bench/peers")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=PEERS,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if done.returncode:
            return f"npm ci failed: {done.stderr.strip()[-300:]}"
    return None


def make(ctx: Context, name: str, keys: ApiKeys, env: dict[str, str] | None = None) -> Server:
    """A server of kind ``name`` (not started); ``env``: more settings for a deltagate pod."""
    python, node = ctx.python, shutil.which("node") or "node"
    script = str(PEERS / "server.js")
    if name == BARE:
        return Server(name, [ScriptProcess(ctx, name, [python, str(BENCH_DIR / "_bare.py")])])
    if name == QUEUED:
        process = ScriptProcess(ctx, name, [python, str(BENCH_DIR / "_queued.py")])
        return Server(name, [process], replays=True)
    if name in (DELTAGATE, DELTAGATE_SSE):
        return Server(
            name,
            [deltagate(ctx, "serve", {**POD_ENV, **(env or {})})],
            proto="sse" if name == DELTAGATE_SSE else "deltagate",
            keys=keys,
            on_redis=True,
            replays=True,
        )
    if name == NODE_WS:
        return Server(name, [NodeProcess(ctx, name, [node, script, "ws"])])
    if name == SOCKETIO:
        process = NodeProcess(ctx, name, [node, script, "socketio"], ctx.redis_url)
        return Server(name, [process], proto="socketio", on_redis=True)
    raise ValueError(name)


class NodeProcess(ScriptProcess):
    """``node bench/peers/server.js MODE PORT [REDIS_URL]``."""

    def __init__(
        self, ctx: Context, name: str, argv: list[str], redis_url: str | None = None
    ) -> None:
        super().__init__(ctx, name, argv)
        self.redis_url = redis_url

    def argv(self) -> list[str]:
        return [*super().argv(), *([self.redis_url] if self.redis_url else [])]


def kinds(ctx: Context) -> tuple[list[str], list[str]]:
    """The servers this run can measure, and notes on those it cannot."""
    names, notes = [BARE, QUEUED, DELTAGATE], []
    why = node_ready()
    if why is None:
        names += [NODE_WS, SOCKETIO]
    else:
        notes.append(f"The Node peers were not measured: {why}.")
    return names, notes
