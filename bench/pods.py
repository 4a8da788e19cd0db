"""Pods behind nginx: CPU per delivery must not grow with the number of pods.

Run by ``bench/run.py`` (alone: ``.venv/bin/python bench/run.py --only pods``). Two set-ups side
by side on the run's Redis, each behind its own nginx running the shipped ``deploy/nginx.conf``
(adapted to local ports and files, as ``tests/e2e/test_nginx.py`` runs nginx): **1 pod** and
**2 pods** (deltagate as deployed, auth on). The same 1,000 subscribers connect through nginx
(``least_conn`` spreads them over the pods) and the appender posts through it; every event goes
through Redis pub/sub to every pod, which delivers to its own subscribers. Rates and repetitions
alternate between the two set-ups (``bench/_fanout/rates.py``).

Reported per delivered event: the pods' CPU (summed), nginx's CPU (master and workers) and
Redis' CPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import redis.asyncio as aioredis
from _common import (
    POD_ENV,
    ROOT,
    ApiKeys,
    Context,
    Spread,
    api_keys,
    deltagate,
    raise_nofile,
    table,
    verdict,
)
from _fanout.plan import HEADLINE_RATES, SUBSCRIBERS, Plan
from _fanout.rates import Load, ms, scenario
from _fanout.results import Step, Steps
from _fanout.rig import Rig
from _fanout.servers import Server
from _fanout.workers import LoadGen

from tests.harness import ServerProcess, free_port

GROWTH = 1.15
"""CPU per delivery with 2 pods at most this many times 1 pod's (the host's noise)."""
HEARING = (10, 300)
"""Subscribers and events/s of the steps that measure what a pod pays to hear an event: so few
subscribers that the deliveries weigh little beside the events."""


def nginx_conf(shipped: str, port: int, pods: list[int], folder: Path) -> str:
    """``deploy/nginx.conf`` listening on 127.0.0.1:``port`` with the local ``pods`` as its
    upstream servers, its pid and logs in ``folder``. Raises if the shipped file changed shape
    (then this adaptation must change with it)."""
    replacements = [
        (r"server gateway-1:8787([^;]*);", "@SERVERS@"),
        (r"\n\s*server gateway-\d+:8787[^;]*;", ""),
        (r"listen 8787;", f"listen 127.0.0.1:{port};"),
        (r"pid /tmp/nginx.pid;", f"pid {folder}/nginx.pid;"),
        (r"error_log /dev/stderr", f"error_log {folder}/error.log"),
        (r"access_log /dev/stdout", f"access_log {folder}/access.log"),
    ]
    text = shipped
    for pattern, new in replacements:
        text, n = re.subn(pattern, new, text, count=1 if "@" in new else 0)
        if not n:
            raise RuntimeError(f"deploy/nginx.conf has no {pattern!r}: adapt bench/pods.py")
    servers = "\n        ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in pods)
    return text.replace("@SERVERS@", servers)


class Nginx(ServerProcess):
    """nginx in the foreground with a configuration of its own; ready when ``/readyz`` (a
    pod's, through it) answers."""

    name = "nginx"

    def __init__(self, ctx: Context, pods: list[int]) -> None:
        port = free_port()
        super().__init__(port=port, log_path=ctx.logs / f"nginx-{port}.log")
        self.folder = ctx.logs / f"nginx-{port}"
        self.folder.mkdir()
        shipped = (ROOT / "deploy" / "nginx.conf").read_text()
        self.conf = self.folder / "nginx.conf"
        self.conf.write_text(nginx_conf(shipped, port, pods, self.folder))

    def argv(self) -> list[str]:
        binary = shutil.which("nginx") or "nginx"
        folder = str(self.folder)
        errors = f"{folder}/error.log"
        return [binary, "-g", "daemon off;", "-c", str(self.conf), "-p", folder, "-e", errors]

    def pids(self) -> list[int]:
        """The master and its workers."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return [self.pid, *map(int, children)]


def setup(ctx: Context, keys: ApiKeys, pods: int) -> Server:
    """``pods`` pods behind their own nginx, measured as one server; nginx's CPU apart."""
    processes = [deltagate(ctx, "serve", POD_ENV) for _ in range(pods)]
    proxy = Nginx(ctx, [p.port for p in processes])
    return Server(
        f"{pods} pod{'s' if pods > 1 else ''} behind nginx",
        [*processes, proxy],
        keys=keys,
        on_redis=True,
        entry=proxy,
        parts={"nginx": proxy.pids},
    )


async def main(ctx: Context) -> str:
    if shutil.which("nginx") is None:
        return "## Pods behind nginx\n\nSkipped: nginx is not installed."
    raise_nofile()
    plan = Plan.of(ctx)
    keys = await api_keys(ctx)
    lg = LoadGen()
    admin = aioredis.Redis(port=ctx.redis_port, decode_responses=True)
    rig = Rig(plan, lg, admin)
    setups = [setup(ctx, keys, 1), setup(ctx, keys, 2)]
    started = time.monotonic()
    try:
        await lg.start(ctx.python)
        for server in setups:
            await server.start()
        loads = [Load(s, f"pods-{i}", SUBSCRIBERS, s.name) for i, s in enumerate(setups)]
        rates = HEADLINE_RATES[:1] if ctx.quick else HEADLINE_RATES
        steps = await scenario(rig, loads, rates)
        few, rate = HEARING
        hearing = await scenario(
            rig, [Load(s, f"hear-{i}", few, s.name) for i, s in enumerate(setups)], [rate]
        )
        version = subprocess.run(
            ["nginx", "-v"], capture_output=True, text=True, check=False
        ).stderr.strip()
        for server in setups:
            server.alive()
    finally:
        for server in setups:
            server.stop()
        await lg.stop()
        await admin.aclose()
    names = [s.name for s in setups]
    return report(steps, hearing, names, plan, version, time.monotonic() - started)


def us_per_event(step: Step) -> float:
    """The pods' CPU per event appended in the step's window."""
    return step.server_cpu * 1e6 / step.appended


def hearing_cost(hearing: Steps, names: list[str]) -> str:
    """What one more pod costs per event: the pods' CPU per event with 2 pods less that with 1,
    from the steps with few subscribers (each repetition's pair)."""
    few, rate = HEARING
    one, two = (hearing.get(n, rate) for n in names)
    extra = Spread.of([us_per_event(b) - us_per_event(a) for a, b in zip(one, two, strict=True)])
    per_event = extra.median
    spread = hearing.spread
    rows = [
        [
            name,
            spread(name, rate, lambda s: s.deliveries).text(0),
            spread(name, rate, us_per_event).text(0),
            spread(name, rate, lambda s: s.p99).text(1, 1e3),
        ]
        for name in names
    ]
    return "\n\n".join(
        [
            "### What a pod pays to hear an event",
            f"{few} subscribers x {rate} events/s through the same set-ups (one event per "
            "append), so the pods' CPU is mostly per event, not per delivery: every pod holding "
            "a subscriber of a store hears each of its events from Redis pub/sub, matches it and "
            "frames it once. The second pod's share is what each further pod adds.",
            table(["set-up", "deliveries/s", "pods' us CPU per event", "p99 ms"], rows),
            f"One more pod: **{per_event:.0f} us** of CPU per event (median of the repetitions' "
            f"pairs, {extra.values[0]:.0f}..{extra.values[-1]:.0f}); at {SUBSCRIBERS:,} "
            f"subscribers that is {per_event / SUBSCRIBERS:.2f} us per delivery per pod.",
        ]
    )


def report(
    steps: Steps, hearing: Steps, names: list[str], plan: Plan, version: str, elapsed: float
) -> str:
    rows, verdicts = [], []
    for rate in steps.rates():
        for name in names:
            spread = steps.spread
            rows.append(
                [
                    rate,
                    name,
                    spread(name, rate, lambda s: s.deliveries).text(0),
                    spread(name, rate, lambda s: s.us_per_delivery).text(1, bold=True),
                    spread(name, rate, lambda s: s.part_us("nginx")).text(1),
                    spread(name, rate, lambda s: s.redis_us_per_delivery).text(2),
                    spread(name, rate, lambda s: s.p99).text(1, 1e3),
                    ms(max(s.slowest for s in steps.get(name, rate))),
                    f"{max(s.missing for s in steps.get(name, rate)):.1%}",
                    spread(name, rate, lambda s: s.host_busy * 100).text(0),
                ]
            )
        one, two = (steps.spread(n, rate, lambda s: s.us_per_delivery) for n in names)
        grow = two.median / one.median if one.median else float("nan")
        verdicts.append(
            f"- **{verdict(grow <= GROWTH)}** at {SUBSCRIBERS:,} x {rate}/s: pods' CPU per "
            f"delivery with 2 pods / 1 pod = **{grow:.2f}x** (at most {GROWTH:g}x: the host's "
            "noise)"
        )
    return "\n\n".join(
        [
            "## Pods behind nginx",
            f"`deploy/nginx.conf` as shipped ({version}; `least_conn`, keepalive to the "
            "upstreams, `worker_processes auto`) adapted to local ports and files, one nginx per "
            f"set-up; {SUBSCRIBERS:,} subscribers and the appender go through it (deltagate "
            f"with auth on). Medians of {plan.repetitions} (min..max). Pods' CPU is summed "
            "over the pods; nginx and Redis are reported apart, per delivered event. Host busy: "
            "the share of both cores busy with anyone's work in the window; near 100% every "
            "process here waits for a core. "
            f"This section took {elapsed / 60:.1f} min.",
            table(
                [
                    "events/s",
                    "set-up",
                    "deliveries/s",
                    "pods' us CPU/delivery",
                    "nginx us/delivery",
                    "Redis us/delivery",
                    "p99 ms",
                    "slowest ms",
                    "lost (worst)",
                    "host busy %",
                ],
                rows,
            ),
            "Goal (issue 19): CPU per delivery does not grow with the number of pods.",
            "\n".join(verdicts),
            hearing_cost(hearing, names),
        ]
    )
