"""Real parts for the tests: a redis-server the suite starts itself on a free port, gateway pods
as real processes (both from tests/harness.py), and the binaries and browsers they need.

With CI=true a missing binary is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from broker.apikeys import KeyStore
from tests.harness import ROOT, Pod, PostgresServer, RedisServer

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


@pytest.fixture(autouse=True)
def _no_leaked_sockets() -> Iterator[None]:
    """A socket a test leaves open fails that test, not a later one in the same worker: once the
    test's other function-scoped fixtures (an async test's loop too, see ``_loop_settled``) are
    gone, the garbage collector runs, so an unclosed transport's ResourceWarning (an error:
    ``filterwarnings``) is raised in this test's teardown rather than in whichever test a later
    collection happens to interrupt."""
    yield
    gc.collect()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every async test's loop settles (``_loop_settled``) before it is closed."""
    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "obj", None)):
            item.fixturenames.insert(0, "_loop_settled")  # type: ignore[attr-defined]


@pytest.fixture
async def _loop_settled(_no_leaked_sockets: None) -> AsyncIterator[None]:
    """After an async test and its other fixtures, in its loop: generators a ``break`` dropped
    are finalized while the loop runs (their ``aclose`` is a task it must run), the tasks the
    test left get up to ``SETTLE_SECONDS`` to end, and the callbacks that close their
    transports run. It asks for ``_no_leaked_sockets``: that one is set up before this test's
    loop, so it is torn down after the loop is closed."""
    yield
    gc.collect()
    this = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while others := [t for t in asyncio.all_tasks() if t is not this and not t.done()]:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        await asyncio.wait(others, timeout=left)
    for _ in range(3):
        await asyncio.sleep(0)


SETTLE_SECONDS = 2.0


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


POSTGRES_ADMIN = os.environ.get(
    "DELTAGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""The machine's PostgreSQL (on these machines and in CI: 127.0.0.1:5432, trust auth). Each test
worker gets a database of its own there."""


def _pg(url: str, *statements: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    import secrets

    name = f"dg_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        _pg(POSTGRES_ADMIN, f"CREATE DATABASE {name}")
    except (OSError, Exception) as exc:  # asyncpg's errors, a refused connection
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_ADMIN}: {exc!r}")
    url = POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        _pg(POSTGRES_ADMIN, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def archive_url(postgres_database: str) -> str:
    """An archive database of this worker's, emptied for this test."""
    _pg(
        postgres_database,
        "DROP TABLE IF EXISTS deltagate_events",
        "DROP TABLE IF EXISTS deltagate_runs",
        "DROP TABLE IF EXISTS deltagate_stores",
    )
    return postgres_database


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, to stop and restart."""
    bindir = Path("/usr/lib/postgresql")
    versions = sorted(bindir.glob("*/bin/initdb"))
    if not versions:
        unavailable("PostgreSQL's initdb is not installed (apt-get install postgresql)")
    with tempfile.TemporaryDirectory(prefix="dg-pg-") as tmp:
        os.chmod(tmp, 0o755)  # the server runs as the postgres user: it must get through
        server = PostgresServer(versions[-1].parent, Path(tmp) / "pg")
        server.init()
        server.start()
        try:
            yield server
        finally:
            try:
                server.stop()
            except subprocess.SubprocessError:
                pass


@pytest.fixture
def pods(redis_url: str) -> Iterator[list[Pod]]:
    """Call ``spawn(n)`` to start n pods on the private Redis; all are stopped afterwards."""
    started: list[Pod] = []
    yield started
    for pod in started:
        pod.stop()


@pytest.fixture
async def keys(redis_url: str) -> AsyncIterator[KeyStore]:
    """API keys in the suite's private Redis (``keys.create(name, scopes)``)."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    yield KeyStore(client)
    await client.aclose()
