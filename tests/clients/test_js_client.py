"""The JavaScript client (/client/deltagate.js) in Node 20 with the `ws` package.

Unit tests against a scripted socket (node --test), then the served module end to end: two real
pods behind a retargetable proxy, the pod in use killed mid-stream, and every subscription must
have seen exactly the matching events of the log, in order, none twice, none missing.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker import Filter
from tests.clients.conftest import FAST, NODE_DIR, append_sync
from tests.clients.proxy import Proxy
from tests.e2e.test_streaming import expected, log_entries
from tests.harness import ROOT, spawn_pods, wait_for

STORE = "jsclient"
CLIENT_JS = ROOT / "gateway" / "static" / "deltagate.js"

pytestmark = pytest.mark.timeout(60)


def test_unit(node: str) -> None:
    done = subprocess.run(
        [node, "--test", "unit.test.mjs"],
        cwd=NODE_DIR,
        env={**os.environ, "DELTAGATE_JS": str(CLIENT_JS)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


class Follower:
    """One run of follow.mjs: its JSON lines, collected by a reader thread."""

    def __init__(
        self, node: str, url: str, subs: dict[str, dict[str, Any]], api_key: str | None = None
    ) -> None:
        command = [node, str(NODE_DIR / "follow.mjs"), "--url", url, "--store", STORE]
        for name, sub in subs.items():
            command += ["--sub", f"{name}={json.dumps(sub)}"]
        command += ["--initial-delay", "300", "--max-delay", "2000"]
        if api_key is not None:
            command += ["--api-key", api_key]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=NODE_DIR,
        )
        self.lines: list[dict[str, Any]] = []
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = json.loads(raw)
            self.lines.append(line)
            if line["kind"] == "positions":
                self.replies.put(line)

    def events(self, sub: str) -> list[int]:
        return [x["gp"] for x in list(self.lines) if x["kind"] == "event" and x["sub"] == sub]

    def states(self, sub: str) -> list[str]:
        return [x["state"] for x in list(self.lines) if x["kind"] == "state" and x["sub"] == sub]

    def positions(self) -> dict[str, dict[str, int | None]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("positions\n")
        self.proc.stdin.flush()
        return self.replies.get(timeout=5)["positions"]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def describe(self) -> str:
        stderr = ""
        if self.proc.poll() is not None and self.proc.stderr is not None:
            stderr = self.proc.stderr.read()[-2000:]
        others = [x for x in self.lines if x["kind"] not in ("event",)]
        return f"non-event lines: {others[-20:]}; stderr: {stderr}"


TYPES = ["order.placed", "order.shipped", "user.created", "payment.created"]


def appender(base_url: str, rng: random.Random, batches: int, stop_after: threading.Event) -> None:
    for i in range(batches):
        events = [{"type": rng.choice(TYPES), "data": {"i": i, "k": k}} for k in range(5)]
        append_sync(base_url, STORE, f"s-{i % 4}", events, key=f"js-{i}")
        time.sleep(0.01)
    stop_after.set()


def test_exactly_once_across_a_killed_pod(node: str, redis_url: str, pods, proxies) -> None:
    a, b = spawn_pods(pods, redis_url, 2, **FAST)
    proxy = Proxy(a.port).start()
    proxies.append(proxy)
    served = httpx.get(f"{proxy.url}/client/deltagate.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    assert served.content == CLIENT_JS.read_bytes()
    types = httpx.get(f"{proxy.url}/client/deltagate.d.ts")
    assert types.status_code == 200 and b"class DeltaBaseWebSocket" in types.content

    rng = random.Random(11)
    for i in range(4):  # history, so 'earliest' and numeric positions have something to replay
        append_sync(b.url, STORE, f"s-{i}", [{"type": rng.choice(TYPES), "data": {}}] * 5)
    subs = {
        "all": {"filter": "*", "position": "earliest"},
        "orders": {"filter": "order.*", "position": "latest"},
        "s1": {"filter": ["order.*", "user.created"], "streamId": "s-1", "position": 7},
        "payments": {"filter": "payment.*", "position": 3},
    }
    follower = Follower(node, proxy.url, subs)
    try:
        wait_for(lambda: len(follower.events("all")) == 20, what="the replay of 20 events")
        # The 'latest' subscription starts at the head (20) once the server confirmed it.
        wait_for(
            lambda: all(v is not None for v in follower.positions()["orders"].values()),
            what="the latest subscription to be confirmed",
        )
        done = threading.Event()
        writer = threading.Thread(target=appender, args=(b.url, rng, 60, done))
        writer.start()
        wait_for(lambda: len(follower.events("all")) > 60, what="live events before the kill")
        a.kill()
        proxy.retarget(b.port)
        writer.join(30)
        assert done.is_set()
        entries = log_entries(redis_url, STORE)
        assert [e[0] for e in entries] == list(range(1, 321))
        starts = {"all": 0, "orders": 20, "s1": 7, "payments": 3}
        for name, sub in subs.items():
            flt = Filter.parse(sub["filter"], sub.get("streamId"))
            want = expected(entries, flt, starts[name])
            wait_for(
                lambda n=name, w=want: len(follower.events(n)) >= len(w),
                timeout=20,
                what=f"{name} to see {len(want)} events ({follower.describe()})",
            )
        time.sleep(0.3)  # anything extra would arrive now
        for name, sub in subs.items():
            flt = Filter.parse(sub["filter"], sub.get("streamId"))
            got = follower.events(name)
            assert got == expected(entries, flt, starts[name]), name
            assert "reconnecting" in follower.states(name), follower.states(name)
            assert follower.states(name)[-1] == "open"
    finally:
        follower.close()
        assert follower.lines and follower.lines[-1]["kind"] == "bye", follower.describe()


def test_node_sends_the_key_in_a_header_not_in_the_url(node: str, redis_url: str, pods) -> None:
    """With the `ws` package the key never appears in a URL, so neither a proxy's log nor the
    pod's own ("WebSocket /path?query" [accepted]) can hold it."""
    admin = "admin-key-for-the-js-client"
    (pod,) = spawn_pods(pods, redis_url, 1, DELTAGATE_AUTH="enabled", DELTAGATE_ADMIN_KEY=admin)
    follower = Follower(node, pod.url, {"all": {"filter": "*"}}, api_key=admin)
    try:
        wait_for(
            lambda: all(v is not None for v in follower.positions()["all"].values()),
            what=f"the subscription to be confirmed ({follower.describe()})",
        )
        headers = {"X-API-Key": admin}
        appended = httpx.post(
            f"{pod.url}/event-stores/{STORE}/streams/s-1",
            json={"events": [{"type": "a.b", "data": {}}]},
            headers=headers,
        )
        assert appended.status_code == 201, appended.text
        wait_for(lambda: follower.events("all") == [1], what="the event, authenticated")
    finally:
        follower.close()
    log = pod.log_path.read_text()
    assert f"/event-stores/{STORE}/events/ws" in log, "the pod logs its WebSocket upgrades"
    assert "apiKey" not in log


def test_typescript_declarations_match_the_module() -> None:
    """Every name the module exports is declared, and the reverse."""
    source = CLIENT_JS.read_text()
    declared = Path(CLIENT_JS.with_suffix(".d.ts")).read_text()
    exported = set(re.findall(r"^export (?:async )?(?:function|class|const) (\w+)", source, re.M))
    typed = set(re.findall(r"^export declare (?:function|class|const) (\w+)", declared, re.M))
    assert exported == typed


def test_short_tokens_are_refreshed_over_the_open_socket(node: str, redis_url: str, pods) -> None:
    admin = "admin-secret-for-js-refresh"
    (pod,) = spawn_pods(
        pods,
        redis_url,
        1,
        DELTAGATE_AUTH="enabled",
        DELTAGATE_ADMIN_KEY=admin,
        DELTAGATE_TOKEN_SECRET="token-secret-for-js-refresh-0123456789",
        DELTAGATE_TOKEN_EXPIRY_GRACE="0",  # an unrefreshed token closes at once
    )
    headers = {"X-API-Key": admin}
    assert httpx.post(f"{pod.url}/event-stores", json={"name": STORE}, headers=headers)
    command = [node, str(NODE_DIR / "refresh.mjs"), "--url", pod.url, "--store", STORE]
    command += ["--key", admin, "--ttl", "2"]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=NODE_DIR
    )
    lines: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(raw) for raw in proc.stdout or []), daemon=True
    )
    reader.start()
    try:
        for i in range(6):  # 6 s: three 2-second tokens' worth
            r = httpx.post(
                f"{pod.url}/event-stores/{STORE}/streams/s-{i}",
                json={"events": [{"type": "a.b", "data": {}}]},
                headers=headers,
            )
            assert r.status_code == 201
            time.sleep(1)
        wait_for(lambda: [x["gp"] for x in lines if x["kind"] == "event"] == list(range(1, 7)))
        states = [x["state"] for x in lines if x["kind"] == "state"]
        assert states == ["connecting", "open"], f"it reconnected: {lines}"
        assert sum(x["kind"] == "token" for x in lines) >= 3, "tokens were not refreshed"
        assert not [x for x in lines if x["kind"] == "error"], lines
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(5)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
