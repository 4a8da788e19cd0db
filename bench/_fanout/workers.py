"""The load generator as the controller sees it: ``Worker`` is one ``bench/_loadgen.py`` process
(picows on uvloop), driven by one JSON command per line on its stdin and answering one per line;
``LoadGen`` is the subscriber processes and the appender process together, spreading connections
over the subscribers and merging what they answer."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
from typing import Any

import orjson
from _common import BENCH_DIR, process_cpu, progress

from .plan import SUB_WORKERS

CALL_TIMEOUT = 120.0


class Worker:
    """One ``bench/_loadgen.py`` process, one JSON command per line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.errors = tempfile.TemporaryFile()
        self.lock = asyncio.Lock()

    async def start(self, python: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            python,
            str(BENCH_DIR / "_loadgen.py"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            limit=1 << 26,
        )
        await self.call("ping", 30)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return process_cpu(self.pid)

    async def call(self, cmd: str, limit: float = CALL_TIMEOUT, **args: Any) -> dict[str, Any]:
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        async with self.lock:
            proc.stdin.write(orjson.dumps({"cmd": cmd, **args}) + b"\n")
            await proc.stdin.drain()
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), limit)
            except TimeoutError:
                raise RuntimeError(f"load generator {self.name}: {cmd} timed out") from None
        if not line:
            self.errors.seek(0)
            tail = self.errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"load generator {self.name} exited: {tail}")
        result: dict[str, Any] = orjson.loads(line)
        if "error" in result:
            raise RuntimeError(f"load generator {self.name}: {cmd}: {result['error']}")
        return result

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.write(b'{"cmd":"exit"}\n')
            await proc.stdin.drain()
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        self.errors.close()


class LoadGen:
    def __init__(self, processes: int = SUB_WORKERS) -> None:
        self.subs = [Worker(f"subscribers-{i + 1}") for i in range(processes)]
        self.appender = Worker("appender")

    @property
    def workers(self) -> list[Worker]:
        return [*self.subs, self.appender]

    async def start(self, python: str) -> None:
        await asyncio.gather(*(w.start(python) for w in self.workers))

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers))

    def cpu(self) -> list[float]:
        return [w.cpu() for w in self.workers]

    @staticmethod
    def split(total: int, parts: int) -> list[int]:
        return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]

    async def each(self, cmd: str, limit: float = CALL_TIMEOUT, **args: Any) -> list[dict]:
        return list(await asyncio.gather(*(w.call(cmd, limit, **args) for w in self.subs)))

    async def connect(
        self,
        group: str,
        url: str,
        total: int,
        *,
        concurrency: int = 100,
        timeout: float = 90.0,
        wait_caught: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        """``total`` connections spread over the subscriber processes; ``options`` are the
        load generator's (position, proto, headers, filters, sources, stall)."""
        counts = self.split(total, len(self.subs))
        results = await asyncio.gather(
            *(
                w.call(
                    "connect",
                    timeout + 30,
                    group=group,
                    url=url,
                    count=n,
                    concurrency=concurrency,
                    timeout=timeout,
                    wait_caught=wait_caught,
                    **options,
                )
                for w, n in zip(self.subs, counts, strict=True)
                if n
            )
        )
        merged = merge_connects(results, wait_caught)
        if merged["failed"]:
            progress(f"{merged['failed']} of {total} connections failed: {merged['errors'][:2]}")
        return merged

    async def close(self, group: str) -> None:
        await self.each("close", 30, group=group)


def merge_connects(results: list[dict[str, Any]], wait_caught: bool) -> dict[str, Any]:
    """One answer to ``connect`` from the answers of each subscriber process."""
    merged: dict[str, Any] = {
        "connected": sum(r["connected"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "errors": [e for r in results for e in r["errors"]],
        "refused": sum(r["refused"] for r in results),
        "seconds": max(r["seconds"] for r in results),
        "positions": sorted({p for r in results for p in r["positions"]}),
        "per_worker": [r["connected"] for r in results],
    }
    if wait_caught:
        merged |= {
            "caught": sum(r["caught"] for r in results),
            "first_sub_sent": min(r["first_sub_sent"] for r in results),
            "last_caught": max(r["last_caught"] for r in results),
            "events_min": min(r["events_min"] for r in results),
            "events_max": max(r["events_max"] for r in results),
            "server_errors": [e for r in results for e in r["server_errors"]],
        }
    return merged
