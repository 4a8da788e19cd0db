"""Run deltagate's benchmarks and write ``bench/RESULTS.md`` (figures beside it).

    .venv/bin/python bench/run.py [--only append[,fanout]] [--quick] [--output FILE]

or ``make bench`` for everything. A full run takes about 25 to 45 minutes on a 2-core
host (fan-out ~20, scale ~5, pods ~4, the others ~3 each); ``--only`` runs a subset
(``bench/README.md`` says what each measures). A smoke run after changing the benchmarks
(every benchmark with short phases and one repetition; indicative figures, so never over
RESULTS.md):

    .venv/bin/python bench/run.py --quick --output /tmp/bench-quick.md

Every module ``bench/<name>.py`` whose name does not start with ``_`` (and is not this file) is a
benchmark: it defines ``async def main(ctx: Context) -> str`` (or a plain ``def main(ctx)``)
returning one markdown section. They run in name order, one after the other, against a private
``redis-server`` this script starts on a free port (no persistence; ``tests.harness.RedisServer``,
which the tests use too) and stops at the end; the database is flushed before each module. A
module that raises gets a FAILED section instead of figures, the others still run, and the exit
status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import inspect
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis
from _common import BENCH_DIR, ROOT, Context

from tests.harness import RedisServer


def discover() -> list[str]:
    return sorted(
        p.stem for p in BENCH_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "run"
    )


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_revision() -> str:
    """HEAD, and which files of the measured code differ from it (with a hash of the diff, to
    tell two dirty trees apart). Read-only: no git command here writes to the repository."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    rev = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    code = ["broker", "gateway", "pyproject.toml"]
    dirty = sorted(line[3:] for line in git("status", "--porcelain", "--", *code).splitlines())
    if not dirty:
        return rev
    digest = hashlib.sha256(git("diff", "HEAD", "--", *code).encode()).hexdigest()[:10]
    return f"{rev} + uncommitted changes (diff sha256 {digest}) in {', '.join(dirty)}"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def header(
    command: str,
    redis_version: str,
    args: argparse.Namespace,
    names: list[str],
    started: datetime,
    load_at_start: str,
) -> str:
    import hiredis
    import redis

    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    flags = " (`--quick`: short runs, figures are indicative only)" if args.quick else ""
    return "\n".join(
        [
            "# deltagate benchmarks",
            "",
            f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
            f"- Machine: `nproc` = {len(os.sched_getaffinity(0))}, CPU {cpu_model()}, "
            f"Linux {platform.release()}",
            f"- Python {platform.python_version()}, {loop}, redis-py {redis.__version__}, "
            f"hiredis {hiredis.__version__}; Redis {redis_version} (a private "
            "`redis-server --save '' --appendonly no` on 127.0.0.1, started by the run)",
            f"- Code: {git_revision()}",
            f"- Command: {command}{flags}",
            f"- Benchmarks: {', '.join(names)}",
            f"- Load average (1, 5, 15 min) at start {load_at_start}, at end {loadavg()}: other "
            "work on the host during the run lowers the throughput figures, much less the CPU "
            "per event",
            "",
            "Everything (Redis, the gateway, the load generators) shares this one host, so the "
            "figures are for comparing designs and catching regressions, not capacity planning.",
        ]
    )


async def run_module(name: str, ctx: Context) -> tuple[str, bool]:
    """One module's section, or (when it raises) a section saying so; and whether it ran."""
    started = time.monotonic()
    try:
        module = importlib.import_module(name)
        section = module.main(ctx)
        if inspect.isawaitable(section):
            section = await section
        return str(section).strip(), True
    except Exception:
        error = traceback.format_exc()
        print(error, file=sys.stderr, flush=True)
        tail = "\n".join(error.strip().splitlines()[-12:])
        return (
            f"## {name}\n\n**FAILED** after {time.monotonic() - started:.0f} s; no figures. "
            f"End of the traceback:\n\n```\n{tail}\n```",
            False,
        )


async def run(args: argparse.Namespace, names: list[str], command: str) -> tuple[str, bool]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="dg-bench-") as tmp:
        server = RedisServer(binary, Path(tmp), appendonly=False)
        server.start()
        client = aioredis.Redis(port=server.port, decode_responses=True)
        try:
            ctx = Context(
                redis_url=server.url,
                redis_port=server.port,
                quick=args.quick,
                python=sys.executable,
                logs=Path(tmp),
                output=args.output.resolve(),
                servers=tuple(n for item in args.servers for n in item.split(",") if n),
                rates=tuple(int(r) for r in args.rates.split(",") if r) if args.rates else (),
            )
            return await run_modules(args, names, command, ctx, client)
        finally:
            await client.aclose()
            server.stop()


async def run_modules(
    args: argparse.Namespace,
    names: list[str],
    command: str,
    ctx: Context,
    client: aioredis.Redis,
) -> tuple[str, bool]:
    version = str((await client.info("server"))["redis_version"])
    started, load_at_start = datetime.now(UTC), loadavg()
    sections, ok = [], True
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        await client.flushall()
        section, ran = await run_module(name, ctx)
        sections.append(section)
        ok = ok and ran
    top = header(command, version, args, names, started, load_at_start)
    return "\n\n".join([top, *sections]) + "\n", ok


def main(argv: list[str] | None = None) -> None:
    available = discover()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help=f"run only these benchmarks (of: {', '.join(available)})",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument(
        "--output", type=Path, default=BENCH_DIR / "RESULTS.md", help="default: bench/RESULTS.md"
    )
    parser.add_argument(
        "--servers",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="fanout: only these servers (e.g. deltagate), for quick before/after pairs",
    )
    parser.add_argument(
        "--rates",
        metavar="N[,N]",
        help="fanout: only the 1,000-subscriber steps at these events/s (no other phase)",
    )
    args = parser.parse_args(argv)
    wanted = [n for item in args.only for n in item.split(",") if n]
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(available)})")
    names = [n for n in available if n in wanted] if wanted else available

    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else ""
    script = os.path.relpath(Path(__file__).resolve(), ROOT)
    command = f"`{shlex.join([python or sys.executable, script, *sys.argv[1:]])}`"
    if os.environ.get("MAKELEVEL"):
        command = f"`make bench`, which runs {command}"

    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    started = time.monotonic()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        text, ok = runner.run(run(args, names, command))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(
        f"wrote {os.path.relpath(args.output)} in {time.monotonic() - started:.0f} s"
        + ("" if ok else "; some benchmarks FAILED"),
        file=sys.stderr,
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
