"""A real nginx in front of 3 gateway pods: clients connected through it while one pod is
drained and another is killed -9 all resume through nginx with nothing lost or duplicated. And
the shipped deploy/nginx.conf in front of a pod: its access log never holds a credential."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import websockets

from broker import Filter
from tests.conftest import need_binary
from tests.e2e.test_streaming import STORE, assert_exact, log_entries, random_events
from tests.e2e.wsclient import Client
from tests.harness import ROOT, free_port, spawn_pods, wait_for

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream gateways {{
        {servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_buffering off;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 1s;
        }}
    }}
}}
"""


@pytest.fixture
def nginx_for():
    binary = need_binary("nginx")
    started: list[subprocess.Popen[bytes]] = []

    def start(ports: list[int]) -> str:
        port = free_port()
        tmp = tempfile.mkdtemp(prefix="dg-nginx-")
        servers = "\n        ".join(
            f"server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in ports
        )
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp, servers=servers, port=port))
        proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", tmp, "-e", f"{tmp}/error.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, what="nginx"
        )
        return f"127.0.0.1:{port}"

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


class Resuming(Client):
    """Reconnects through the load balancer whenever its socket closes, resuming by number."""

    def __init__(self, lb: str) -> None:
        super().__init__(f"ws://{lb}", STORE)
        self.reconnects = 0
        self.close_codes: list[int | None] = []
        self._keeper: asyncio.Task[None] | None = None

    def keep_alive(self) -> None:
        self._keeper = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        while True:
            assert self._reader is not None
            await asyncio.shield(self._reader)  # stop() must not cancel the reader itself
            self.close_codes.append(self.close_code)
            while True:
                try:
                    await self.connect()
                    await self.subscribe("*", self.got.cursor)
                    self.reconnects += 1
                    break
                except (
                    OSError,
                    websockets.InvalidStatus,
                    websockets.ConnectionClosed,
                    AssertionError,
                ):
                    await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._keeper
        await self.disconnect()


async def test_drain_and_kill_behind_nginx(redis_url, pods, nginx_for):
    spawned = spawn_pods(
        pods,
        redis_url,
        3,
        DELTAGATE_DRAIN_SECONDS="2",
        DELTAGATE_GRACE_PERIOD="8",
        DELTAGATE_POLL_INTERVAL="0.5",
    )
    lb = nginx_for([p.port for p in spawned])
    clients = [Resuming(lb) for _ in range(12)]
    for client in clients:
        await client.connect()
        await client.subscribe("*", "earliest")
        client.keep_alive()
    rng = random.Random(9)
    done = asyncio.Event()

    async def appender() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            for i in range(400):
                key = f"lb-{i}"
                while True:  # retry through the balancer, idempotently
                    try:
                        r = await http.post(
                            f"http://{lb}/event-stores/{STORE}/streams/s-{i % 9}",
                            json={"events": random_events(rng, 5)},
                            headers={"Idempotency-Key": key},
                        )
                        if r.status_code == 201:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.005)
        done.set()

    writing = asyncio.create_task(appender())
    await asyncio.sleep(1.0)
    drained, killed = spawned[0], spawned[1]
    started = time.monotonic()
    drained.signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    killed.kill()
    assert drained.proc is not None
    code = await asyncio.get_running_loop().run_in_executor(None, drained.proc.wait, 20)
    assert code == 0, drained.log()
    assert time.monotonic() - started < 8 + 1, "the drained pod overstayed its grace period"
    await writing
    entries = log_entries(redis_url)
    assert [e[0] for e in entries] == list(range(1, 2001))
    for client in clients:
        await client.wait(
            lambda c=client: len(c.got.events) >= len(entries),
            timeout=30,
            what="every event through nginx",
        )
        await asyncio.sleep(0.1)
        assert_exact(client, entries, Filter.parse("*"), 0)
    assert sum(c.reconnects for c in clients) >= 8, "pods went away but nobody reconnected"
    assert 1012 in {code for c in clients for code in c.close_codes}
    for client in clients:
        await client.stop()


def shipped_config(directory: Path, listen: int, pod_port: int) -> Path:
    """deploy/nginx.conf as shipped, but listening on 127.0.0.1:``listen`` in the foreground and
    proxying to one local pod (for compose's three gateway host names)."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    for name in ("gateway-1", "gateway-2", "gateway-3"):
        text = text.replace(f"{name}:8787", f"127.0.0.1:{pod_port}")
    text = text.replace("listen 8787;", f"listen 127.0.0.1:{listen};")
    text = text.replace("pid /tmp/nginx.pid;", f"pid {directory}/nginx.pid;\ndaemon off;")
    config = directory / "nginx.conf"
    config.write_text(text)
    return config


async def test_the_shipped_nginx_logs_paths_without_credentials(redis_url, pods, tmp_path):
    binary = need_binary("nginx")
    (pod,) = spawn_pods(pods, redis_url, 1)
    port = free_port()
    config = shipped_config(tmp_path, port, pod.port)
    access_log = tmp_path / "stdout.log"
    with access_log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-c", str(config), "-p", str(tmp_path)], stdout=out, stderr=subprocess.DEVNULL
        )
    try:
        lb = f"127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"http://{lb}/healthz").status_code == 200, what="nginx")
        secret = "dg_ThisKeyMustNeverBeLogged0123456789"
        token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.bm90LWxvZ2dlZA"
        async with httpx.AsyncClient() as http:
            await http.get(f"http://{lb}/event-stores/{STORE}/events?apiKey={secret}")
            await http.get(f"http://{lb}/event-stores?%61piKey={secret}")
        async with websockets.connect(f"ws://{lb}/event-stores/{STORE}/events/ws?token={token}"):
            pass
        wait_for(lambda: access_log.read_text().count("\n") >= 4, timeout=5, what="4 access lines")
    finally:
        proc.terminate()
        proc.wait(10)
    lines = access_log.read_text()
    assert f'"GET /event-stores/{STORE}/events HTTP/1.1" ' in lines, lines
    assert f'"GET /event-stores/{STORE}/events/ws HTTP/1.1" 101' in lines, lines
    assert secret not in lines and token not in lines and "apiKey" not in lines
