"""SIGTERM drains a pod: readiness off at once, WebSockets get what was queued then 1012, the
process exits 0 within its grace period, and clients resume elsewhere with nothing lost."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import httpx
import pytest

from broker import Filter
from tests.e2e.test_streaming import STORE, append, assert_exact, log_entries
from tests.e2e.wsclient import Client
from tests.harness import spawn_pods


async def test_sigterm_drains_and_clients_resume_elsewhere(redis_url, pods):
    draining, other = spawn_pods(
        pods, redis_url, 2, DELTAGATE_DRAIN_SECONDS="2", DELTAGATE_GRACE_PERIOD="10"
    )
    clients = []
    for _ in range(6):
        client = Client(draining.ws_url, STORE)
        await client.connect()
        await client.subscribe("*", "earliest")
        clients.append(client)
    async with httpx.AsyncClient(timeout=5) as http:
        for i in range(20):
            await append(http, other, f"s-{i}", [{"type": "a.b", "data": {"i": i}}])
        started = time.monotonic()
        draining.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        with pytest.raises(httpx.ConnectError):  # a probe fails: new connections are refused
            await http.get(draining.url + "/readyz")
        for client in clients:
            await client.wait(
                lambda c=client: c.close_code is not None, timeout=10, what="1012 close"
            )
            assert client.close_code == 1012
        assert draining.proc is not None
        code = await asyncio.get_running_loop().run_in_executor(None, draining.proc.wait, 15)
        elapsed = time.monotonic() - started
        assert code == 0, draining.log()
        assert elapsed < 10, f"drain took {elapsed:.1f}s, over the grace period"
        for client in clients:
            await client.resume(other.ws_url, "*")
        for i in range(20, 40):
            await append(http, other, f"s-{i}", [{"type": "a.b", "data": {"i": i}}])
    entries = log_entries(redis_url)
    for client in clients:
        await client.wait(lambda c=client: len(c.got.events) >= len(entries), what="resumed")
        await asyncio.sleep(0.1)
        assert_exact(client, entries, Filter.parse("*"), 0)
        await client.disconnect()


async def test_a_client_that_stopped_reading_does_not_hold_the_exit_past_the_grace(redis_url, pods):
    """A WebSocket whose client reads nothing never completes its close: the process still
    exits 0 within DELTAGATE_GRACE_PERIOD (the drain and uvicorn's wait for open connections
    each had a bound, but their sum was over the grace)."""
    from tests.e2e.test_queue_budget import stalled_socket

    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_DRAIN_SECONDS="1", DELTAGATE_GRACE_PERIOD="6")
    blob = "x" * 4000
    async with httpx.AsyncClient(timeout=10) as http:
        for i in range(6):  # ~6 MB: far more than the stalled client's buffers take
            await append(http, pod, f"s-{i}", [{"type": "a.b", "data": {"b": blob}}] * 250)
    stalled = await stalled_socket(pod.ws_url, pod.port)
    await asyncio.sleep(1)  # its replay fills what the kernel and the transport hold
    started = time.monotonic()
    pod.signal(signal.SIGTERM)
    assert pod.proc is not None
    code = await asyncio.get_running_loop().run_in_executor(None, pod.proc.wait, 30)
    elapsed = time.monotonic() - started
    assert code == 0, pod.log()
    # The bound under test is the grace itself (6 s), with a second for the interpreter's own
    # start-up of the exit: the old sum was 1 + 5 (drain) + 5 (uvicorn) = 11 s.
    assert elapsed < 7, f"exit took {elapsed:.1f}s, past the 6 s grace period"
    stalled.transport.abort()


@pytest.mark.parametrize("command", ["serve", "dispatcher"])
def test_sigterm_before_the_server_started_exits_0(command):
    """A SIGTERM during the imports and start-up (a pod scaled away as it was created) exits 0,
    as a drain would, not 143: the signal is delivered right after the command's module set up,
    long before anything serves. Other commands keep Python's default (a killed export is no
    success)."""
    code = (
        "import os, signal, sys, time\n"
        "sys.argv = ['deltagate', sys.argv[1]]\n"
        "import gateway.cli\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(10)\n"
    )
    for argv, status in (([command], 0), (["export"], -signal.SIGTERM)):
        done = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == status, done.stderr
        if status == 0:
            assert "SIGTERM before the server started" in done.stderr
