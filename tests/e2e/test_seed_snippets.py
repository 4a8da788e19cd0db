"""The guide "Real-Time Events with WebSockets" (the seed page) run against a real deltagate pod.

The page promises that every snippet in it works unchanged against a local deltagate, only the
host differs. tests/e2e/node/harness.js takes the snippets verbatim from the page at test time,
strips their TypeScript types, swaps `wss://api.delta-base.com` for the pod's address and runs
them in Node with the `ws` package as `WebSocket`; whatever they log or render comes back as JSON
lines, which each test compares with exactly what it appended.

Needs node and npm (the harness's node_modules is installed once per session): skipped without
them, failed with CI=true.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import node_with_modules, unavailable
from tests.harness import Pod, spawn_pods, wait_for

NODE_DIR = Path(__file__).resolve().parent / "node"
# shared/ lies beside the repository (the checkout and CI's clone alike).
SEED_PAGE = Path(
    os.environ.get(
        "DELTAGATE_SEED_PAGE",
        Path(__file__).resolve().parents[3] / "shared/seed/real-time-events-with-websockets.txt",
    )
)
DEADLINE = 8.0  # seconds for anything the snippets should do
SETTLE = 0.3  # after the last expected output: anything extra would show up by now

pytestmark = pytest.mark.timeout(30)

Line = dict[str, Any]


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with the harness's dependencies (ws, typescript) installed."""
    if not SEED_PAGE.is_file():
        unavailable(f"seed page {SEED_PAGE} not found (set DELTAGATE_SEED_PAGE)")
    return node_with_modules(NODE_DIR, ["ws", "typescript"])


class Harness:
    """One run of harness.js: its JSON lines, collected as they arrive."""

    def __init__(self, node: str, scenario: str, pod: Pod) -> None:
        self.scenario = scenario
        self.lines: list[Line] = []
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [
                node,
                "harness.js",
                "--seed",
                str(SEED_PAGE),
                "--port",
                str(pod.port),
                "--scenario",
                scenario,
                "--lifetime-ms",
                "25000",
            ],
            cwd=NODE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                line = {"kind": "raw", "text": raw.rstrip("\n")}
            with self._lock:
                self.lines.append(line)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._lock:
                self.stderr.append(raw)

    def snapshot(self) -> list[Line]:
        with self._lock:
            return list(self.lines)

    def describe(self) -> str:
        with self._lock:
            out = "\n".join(json.dumps(line) for line in self.lines[-40:])
            err = "".join(self.stderr)[-2000:]
        return f"[{self.scenario}] stdout:\n{out}\nstderr:\n{err}"

    def check_alive(self) -> None:
        fatal = [line for line in self.snapshot() if line.get("kind") == "fatal"]
        if fatal or self.proc.poll() is not None:
            raise AssertionError(
                f"the harness stopped (exit {self.proc.poll()}):\n{self.describe()}"
            )

    def wait(
        self, predicate: Callable[[list[Line]], Any], what: str, timeout: float = DEADLINE
    ) -> Any:
        def ready() -> Any:
            self.check_alive()
            return predicate(self.snapshot())

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = ready()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}\n{self.describe()}")

    def settle(self) -> list[Line]:
        """Wait a little for anything unexpected, then return everything seen so far."""
        time.sleep(SETTLE)
        self.check_alive()
        return self.snapshot()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def pod(pods: list[Pod], redis_url: str) -> Pod:
    return spawn_pods(pods, redis_url, 1)[0]


@pytest.fixture
def run(node: str, pod: Pod) -> Iterator[Callable[[str], Harness]]:
    """Start a harness scenario against the pod; every run is killed at the end of the test."""
    started: list[Harness] = []

    def start(scenario: str) -> Harness:
        harness = Harness(node, scenario, pod)
        started.append(harness)
        harness.wait(
            lambda lines: any(line["kind"] == "ready" for line in lines),
            f"{scenario} to evaluate the snippets",
        )
        return harness

    yield start
    for harness in started:
        harness.stop()


# -- helpers ------------------------------------------------------------------------------------


def append(pod: Pod, store: str, stream: str, type_: str, data: dict[str, Any]) -> int:
    """Append one event; returns its globalPosition."""
    response = httpx.post(
        f"{pod.url}/event-stores/{store}/streams/{stream}",
        json={"events": [{"type": type_, "data": data}]},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["globalPosition"])


def subscriptions(pod: Pod) -> float:
    text = httpx.get(f"{pod.url}/metrics", timeout=2).text
    found = re.search(r"^deltagate_ws_subscriptions (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


def wait_subscribed(pod: Pod, harness: Harness, n: int = 1) -> None:
    """Until the pod counts ``n`` live subscriptions: only then is an append sure to be seen."""

    def subscribed() -> bool:
        harness.check_alive()
        return subscriptions(pod) == n

    wait_for(subscribed, timeout=DEADLINE, what=f"{n} subscription(s) on the pod")


def logged(lines: list[Line], first: str, kinds: tuple[str, ...] = ("log",)) -> list[list[Any]]:
    """The arguments of every console call whose first argument is ``first``."""
    return [
        line["args"]
        for line in lines
        if line["kind"] in kinds and line["args"] and line["args"][0] == first
    ]


def problems(lines: list[Line]) -> list[Line]:
    """console.error/warn output or anything the harness could not parse."""
    return [line for line in lines if line["kind"] in ("error", "warn", "raw", "fatal")]


def summary(event: dict[str, Any]) -> tuple[Any, ...]:
    return event["type"], event["data"], event["streamId"], event["globalPosition"]


# -- the snippets -------------------------------------------------------------------------------


def test_reconnecting_client_receives_only_matching_events_in_order(run, pod):
    """`class DeltaBaseWebSocket` and its usage: connect(), subscribe('order.*')."""
    harness = run("reconnecting-client")
    wait_subscribed(pod, harness)
    placed = append(pod, "my-events", "order-1", "order.placed", {"orderId": "order-1", "n": 1})
    append(pod, "my-events", "user-1", "user.created", {"userId": "user-1"})
    shipped = append(pod, "my-events", "order-1", "order.shipped", {"orderId": "order-1"})
    want = [
        ("order.placed", {"orderId": "order-1", "n": 1}, "order-1", placed),
        ("order.shipped", {"orderId": "order-1"}, "order-1", shipped),
    ]

    harness.wait(lambda lines: len(logged(lines, "Received event:")) >= 2, "two events")
    lines = harness.settle()
    received = [args[1] for args in logged(lines, "Received event:")]
    assert [summary(event) for event in received] == want
    assert [args for args in (line.get("args") for line in lines) if args] == [
        ["Connected"],
        *(["Received event:", event] for event in received),
    ]
    assert not problems(lines)


def test_order_dashboard_shows_live_statuses(run, pod):
    """`class OrderDashboard`, its usage (initialize()) and renderOrders."""
    harness = run("order-dashboard")
    wait_subscribed(pod, harness)
    one = {
        "orderId": "order-1",
        "customerId": "cust-1",
        "totalAmount": 12.5,
        "placedAt": "2024-05-01T10:00:00.000Z",
    }
    two = {
        "orderId": "order-2",
        "customerId": "cust-2",
        "totalAmount": 99,
        "placedAt": "2024-05-01T11:00:00.000Z",
    }
    append(pod, "orders", "order-1", "order.placed", one)
    append(pod, "orders", "order-2", "order.placed", two)
    append(pod, "orders", "order-1", "order.shipped", {"orderId": "order-1"})
    append(pod, "orders", "order-2", "order.shipped", {"orderId": "order-2"})
    append(pod, "orders", "order-1", "order.delivered", {"orderId": "order-1"})

    def updates(lines: list[Line]) -> list[list[tuple[str, str]]]:
        return [
            [(o["orderId"], o["status"]) for o in line["orders"]]
            for line in lines
            if line["kind"] == "onUpdate"
        ]

    harness.wait(lambda lines: len(updates(lines)) >= 6, "six dashboard updates")
    lines = harness.settle()
    # Newest placedAt first, as notifyUpdate sorts; the first list is the (stubbed) backend's.
    assert updates(lines) == [
        [],
        [("order-1", "pending")],
        [("order-2", "pending"), ("order-1", "pending")],
        [("order-2", "pending"), ("order-1", "shipped")],
        [("order-2", "shipped"), ("order-1", "shipped")],
        [("order-2", "shipped"), ("order-1", "delivered")],
    ]
    final = next(line["orders"] for line in reversed(lines) if line["kind"] == "onUpdate")
    assert final == [
        {
            "orderId": "order-2",
            "customerId": "cust-2",
            "totalAmount": 99,
            "status": "shipped",
            "placedAt": "2024-05-01T11:00:00.000Z",
        },
        {
            "orderId": "order-1",
            "customerId": "cust-1",
            "totalAmount": 12.5,
            "status": "delivered",
            "placedAt": "2024-05-01T10:00:00.000Z",
        },
    ]
    assert [args[1] for args in logged(lines, "Orders updated:")] == [0, 1, 2, 2, 2, 2]
    assert [line["url"] for line in lines if line["kind"] == "fetch"] == ["/api/orders"]
    html = [line["value"] for line in lines if line["kind"] == "dom" and line["id"] == "orders"]
    assert len(html) == 6
    assert re.findall(r'class="order-(?:id|status|amount)">([^<]*)<', html[-1]) == [
        "order-2",
        "shipped",
        "$99.00",
        "order-1",
        "delivered",
        "$12.50",
    ]
    assert not problems(lines)


def test_account_balance_monitor_counts_only_its_account(run, pod):
    """`class AccountBalanceMonitor` for account-123 on store 'banking'."""
    harness = run("account-balance")
    wait_subscribed(pod, harness)
    append(pod, "banking", "account-123", "money.deposited", {"amount": 50})
    append(pod, "banking", "account-999", "money.deposited", {"amount": 1000})
    append(pod, "banking", "account-123", "money.withdrawn", {"amount": 20})

    def balances(lines: list[Line]) -> list[str]:
        return [
            line["value"]
            for line in lines
            if line["kind"] == "dom" and line["id"] == "balance" and line["prop"] == "textContent"
        ]

    harness.wait(lambda lines: "$130.00" in balances(lines), "the balance to reach $130.00")
    lines = harness.settle()
    # 100 from the (stubbed) backend, +50, -20; account-999's deposit never shows.
    assert balances(lines) == ["$100.00", "$150.00", "$130.00"]
    assert [line["url"] for line in lines if line["kind"] == "fetch"] == [
        "/api/accounts/account-123"
    ]
    assert not problems(lines)


def test_basic_connection_and_subscribe_message(run, pod):
    """ "Basic Connection" followed by "Subscribe Message" (order.*, position latest)."""
    harness = run("basic-subscribe")
    first = harness.wait(lambda lines: logged(lines, "Received:"), "the subscribed message")
    subscribed = first[0][1]
    assert subscribed["type"] == "subscribed"
    assert subscribed["eventFilter"] == "order.*"
    assert subscribed["streamId"] is None
    assert isinstance(subscribed["subscriptionId"], str) and subscribed["subscriptionId"]
    assert isinstance(subscribed["position"], int)

    append(pod, "my-events", "user-7", "user.created", {"userId": "user-7"})
    placed = append(pod, "my-events", "order-7", "order.placed", {"orderId": "order-7"})
    harness.wait(lambda lines: len(logged(lines, "Received:")) >= 2, "an event")
    lines = harness.settle()
    received = [args[1] for args in logged(lines, "Received:")]
    assert len(received) == 2, received
    message = received[1]
    assert message["type"] == "event"
    assert message["subscriptionId"] == subscribed["subscriptionId"]
    event = message["event"]
    assert summary(event) == ("order.placed", {"orderId": "order-7"}, "order-7", placed)
    assert placed > subscribed["position"]
    # The fields the guide's handleEvent declares.
    assert {
        "streamId",
        "streamPosition",
        "globalPosition",
        "eventId",
        "type",
        "data",
        "createdAt",
    } <= event.keys()
    assert event["streamPosition"] == 0  # the first event of stream order-7
    # "Subscribe Message" replaced the onopen that would have logged "Connected to DeltaBase".
    assert [line["args"][0] for line in lines if line["kind"] == "log"] == ["Received:"] * 2
    assert not problems(lines)


def test_event_message_format_handler(run, pod):
    """The "Event Message Format" onmessage and handleEvent, on top of the subscribe message."""
    harness = run("event-format")
    harness.wait(lambda lines: logged(lines, "Subscription confirmed"), "the subscribed message")
    append(pod, "my-events", "order-8", "order.placed", {"orderId": "order-8", "total": 5})
    harness.wait(lambda lines: logged(lines, "Data:"), "the event")
    lines = harness.settle()
    assert [line["args"] for line in lines if line["kind"] == "log"] == [
        ["Subscription confirmed"],
        ["Event order.placed on stream order-8"],
        ["Data:", {"orderId": "order-8", "total": 5}],
    ]
    assert not problems(lines)


def test_subscribe_to_specific_stream(run, pod):
    """ "Subscribe to Specific Stream": eventFilter '*', streamId 'order-123'."""
    harness = run("specific-stream")
    first = harness.wait(lambda lines: logged(lines, "Received:"), "the subscribed message")
    subscribed = first[0][1]
    assert (subscribed["type"], subscribed["eventFilter"], subscribed["streamId"]) == (
        "subscribed",
        "*",
        "order-123",
    )

    append(pod, "my-events", "order-456", "order.placed", {"orderId": "order-456"})
    placed = append(pod, "my-events", "order-123", "order.placed", {"orderId": "order-123"})
    append(pod, "my-events", "order-1234", "order.placed", {"orderId": "order-1234"})
    append(pod, "my-events", "order-456", "order.shipped", {"orderId": "order-456"})
    shipped = append(pod, "my-events", "order-123", "order.shipped", {"orderId": "order-123"})
    harness.wait(lambda lines: len(logged(lines, "Received:")) >= 3, "two events")
    lines = harness.settle()
    received = [args[1] for args in logged(lines, "Received:")]
    assert [m["type"] for m in received] == ["subscribed", "event", "event"]
    assert [summary(m["event"]) for m in received[1:]] == [
        ("order.placed", {"orderId": "order-123"}, "order-123", placed),
        ("order.shipped", {"orderId": "order-123"}, "order-123", shipped),
    ]
    assert [args[0] for args in logged(lines, "Connected to DeltaBase")] == [
        "Connected to DeltaBase"
    ]
    assert not problems(lines)
