"""Real parts for the tests: a redis-server the suite starts itself on a free port, gateway pods
as real processes, and helpers to wait for them.

With CI=true a missing binary is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARTIFACTS = ROOT / "tests" / "artifacts"
# Debian's chromium, driven by Playwright (never `playwright install`: that download fails here).
CHROMIUM = os.environ.get("DELTAGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def unavailable(reason: str) -> None:
    """A real dependency is missing: a failure in CI, a skip elsewhere."""
    if CI:
        pytest.fail(reason)
    pytest.skip(reason)


def node_with_modules(node_dir: Path, modules: list[str]) -> str:
    """The node binary, once ``node_dir``'s npm dependencies are installed (``npm ci``)."""
    node_bin = need_binary("node")
    npm_bin = need_binary("npm")
    if all((node_dir / "node_modules" / m).is_dir() for m in modules):
        return node_bin
    lock = (node_dir / "package-lock.json").is_file()
    command = [npm_bin, "ci" if lock else "install", "--no-audit", "--no-fund"]
    where = node_dir.relative_to(ROOT)
    try:
        done = subprocess.run(command, cwd=node_dir, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        unavailable(f"npm install in {where} timed out")
    if done.returncode != 0:
        unavailable(f"npm install in {where} failed:\n{done.stderr[-2000:]}")
    return node_bin


def need_binary(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        unavailable(f"{name} is required but not installed")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium binary, once it and the playwright package are known to be there."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
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
    """A private redis-server with AOF on, so a restart keeps what was acknowledged."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.dir = directory
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
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.dir),
                "--loglevel",
                "warning",
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


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = need_binary("redis-server")
    with tempfile.TemporaryDirectory(prefix="dg-redis-") as tmp:
        server = RedisServer(binary, Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The private server, emptied for this test."""
    redis_server.client().flushall()
    return redis_server.url


class DeltagateProcess:
    """One ``deltagate <command>`` process on a free port of 127.0.0.1, its output in a log file;
    ready when its ``/readyz`` answers 200."""

    command = "serve"
    stop_timeout = 40.0
    """Seconds ``stop()`` waits for the exit before killing (a pod's drain takes up to 30)."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {
            **os.environ,
            **env,
            "DELTAGATE_PORT": str(self.port),
            "DELTAGATE_HOST": "127.0.0.1",
            "DELTAGATE_LOG_JSON": "true",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix=f"dg-{self.command}-", suffix=".log")[1])

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
                [sys.executable, "-m", "gateway.cli", self.command],
                env=self.env,
                stdout=log,
                stderr=log,
                cwd=ROOT,
            )
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self) -> Self:
        wait_for(self.ready, timeout=20, what=f"{self.command} on {self.port} to be ready")
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"`deltagate {self.command}` exited: {self.log()}")
        return httpx.get(self.url + "/readyz", timeout=1).status_code == 200

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


class Pod(DeltagateProcess):
    """One gateway process (`deltagate serve`)."""

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@pytest.fixture
def pods(redis_url: str) -> Iterator[list[Pod]]:
    """Call ``spawn(n)`` to start n pods on the private Redis; all are stopped afterwards."""
    started: list[Pod] = []
    yield started
    for pod in started:
        pod.stop()


def spawn_pods(started: list[Pod], redis_url: str, n: int, **env: str) -> list[Pod]:
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
        wait_for(pod.ready, timeout=20, what=f"pod on {pod.port} to be ready")
    return new
