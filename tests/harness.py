"""Real processes for the tests and the benchmarks: a private redis-server, ``deltagate``
processes (pods, dispatchers) and any other HTTP server that answers ``/readyz``, each on a free
port of 127.0.0.1; and polling until something holds.

The one way to start a deltagate process: tests/conftest.py builds its fixtures on it and bench/
imports it as ``tests.harness`` (bench/_common.py puts the repository root on ``sys.path``). So
nothing here imports pytest: a missing binary is the caller's decision.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import httpx
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

ROOT = Path(__file__).resolve().parent.parent


def sample(metrics_text: str, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` in a ``/metrics`` answer (None: absent)."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on now. Under pytest-xdist a worker takes only the
    ports whose half has its own residue modulo the number of workers: the kernel may hand the
    same free port to two workers before either server binds it, and a test then talks to another
    test's pod (seen once in a full run: a webhook refused by a pod without the test's settings).
    The half, not the port: Linux hands ``bind(port 0)`` odd ports while it has them (connect()
    takes the even ones), so with an even number of workers some residues of the port itself never
    come (``-n 2`` found no port for gw0 in 200 tries)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    mine = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    for _ in range(100 * workers):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port // 2 % workers == mine % workers:
            return port
    raise RuntimeError(f"no free port of residue {mine} modulo {workers}")


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Call ``predicate`` until it returns a true value (which is returned) or ``timeout`` seconds
    pass (AssertionError, with the last exception it raised)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}: {last_error!r}")


class RedisServer:
    """A private redis-server on a free port. With ``appendonly`` (the tests' default) AOF is on
    and fsynced on every write, so a restart keeps what was acknowledged; without it (the
    benchmarks) nothing is persisted at all."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        *,
        appendonly: bool = True,
        options: tuple[str, ...] = (),
    ) -> None:
        self.binary = binary
        self.dir = directory
        self.appendonly = appendonly
        self.options = options
        """More redis-server options (``("--maxmemory-policy", "allkeys-lru")``)."""
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        # No retries: a command that fails because the server went away should say so at once.
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=5,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        if not self.appendonly:
            persistence = ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *persistence,
                "--dir",
                str(self.dir),
                "--loglevel",
                "warning",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.client().ping(), what="redis-server to start")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.client().shutdown(nosave=False)
        except (redis.ConnectionError, redis.ResponseError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, downtime: float = 0.0) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()


class PostgresServer:
    """A private PostgreSQL cluster (initdb on a temporary directory, a free port, trust auth),
    for tests that must stop or restart the archive; the others share the machine's server
    (``postgres_url`` in tests/conftest.py). As root, initdb and the server run as the
    ``postgres`` user, which PostgreSQL requires."""

    def __init__(self, bindir: Path, directory: Path) -> None:
        self.bindir = bindir
        self.dir = directory
        self.data = directory / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import shutil

            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self, downtime: float = 0.0) -> None:
        self.stop()
        time.sleep(downtime)
        self.start()


class ServerProcess:
    """One server process listening on ``port`` of 127.0.0.1, its stdout and stderr in a log file;
    ready when its ``/readyz`` answers 200. A subclass says what to run (``argv``)."""

    name = "server"
    """How errors call the process."""
    log_name = "server"
    """What the default log file's name starts with, after ``dg-``."""
    stop_timeout = 40.0
    """Seconds ``stop()`` waits for the exit before killing (a pod's drain takes up to 30)."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        port: int | None = None,
        *,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path or Path(
            tempfile.mkstemp(prefix=f"dg-{self.log_name}-", suffix=".log")[1]
        )

    def argv(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, wait_ready: bool = True) -> Self:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                self.argv(), env=self.env, stdout=log, stderr=log, cwd=ROOT
            )
        if wait_ready:
            try:
                self.wait_ready()
            except BaseException:
                self.kill()  # (never left running, unowned, to fail a later test when collected)
                raise
        return self

    def wait_ready(self, timeout: float = 20.0) -> Self:
        wait_for(self.ready, timeout=timeout, what=f"{self.name} on {self.port} to be ready")
        return self

    def ready(self) -> bool:
        self.check_running()
        return httpx.get(self.url + "/readyz", timeout=1).status_code == 200

    def check_running(self) -> None:
        """RuntimeError, with the end of the log, if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.log()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then the exit status (killed after ``timeout`` seconds)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class DeltagateProcess(ServerProcess):
    """One ``deltagate <command>`` process (``serve`` unless a subclass or ``command`` says
    otherwise), logging JSON."""

    command = "serve"

    def __init__(
        self,
        env: dict[str, str],
        port: int | None = None,
        *,
        command: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.command = command or self.command
        self.name = f"`deltagate {self.command}`"
        self.log_name = self.command
        super().__init__(env, port, log_path=log_path)
        self.env |= {
            "DELTAGATE_PORT": str(self.port),
            "DELTAGATE_HOST": "127.0.0.1",
            "DELTAGATE_LOG_JSON": "true",
        }

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "gateway.cli", self.command]


class Pod(DeltagateProcess):
    """One gateway process (`deltagate serve`)."""

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def spawn_pods(started: list[Pod], redis_url: str, n: int, **env: str) -> list[Pod]:
    """Start ``n`` pods on ``redis_url`` (auth off, stores created on use, then ``env``) side by
    side, append them to ``started`` (whoever owns that list stops them) and wait until all are
    ready."""
    base = {
        "DELTAGATE_REDIS_URL": redis_url,
        "DELTAGATE_AUTH": "disabled",
        "DELTAGATE_AUTO_CREATE_STORES": "true",
    }
    base.update(env)
    new = [Pod(base) for _ in range(n)]
    for pod in new:
        pod.start(wait_ready=False)
        started.append(pod)
    for pod in new:
        # Generous: a pod binds its port after its start-up, which a loaded host with a slow disk
        # once stretched past 20 s in a full run (connection refused throughout, process alive).
        wait_for(pod.ready, timeout=60, what=f"pod on {pod.port} to be ready")
    return new
