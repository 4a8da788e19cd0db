"""The demo pages in headless Chromium (Debian's, driven by Playwright), served by real pods
behind a proxy so the page keeps its origin while the pod serving it is killed and another
takes over. Screenshots go to tests/artifacts/demo-*.png."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker import Filter
from tests.clients.conftest import FAST, append_sync
from tests.clients.proxy import Proxy
from tests.conftest import CHROMIUM_ARGS
from tests.e2e.test_streaming import expected, log_entries
from tests.harness import spawn_pods

pytestmark = pytest.mark.timeout(90)

SCRIPT = "<script>window.pwned=1</script>"
IMG = '<img src=x onerror="window.pwned=2">'


def placed(order_id: str, customer: str = "customer-1", amount: Any = 10.0) -> dict[str, Any]:
    return {
        "type": "order.placed",
        "data": {
            "orderId": order_id,
            "customerId": customer,
            "totalAmount": amount,
            "placedAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        },
    }


def status(kind: str, order_id: str) -> dict[str, Any]:
    return {"type": f"order.{kind}", "data": {"orderId": order_id}}


async def until(page: Any, expression: str, timeout: float = 5.0) -> None:
    """Poll a JS expression until truthy. (Playwright's wait_for_function evaluates strings
    inside the page, which the demo pages' Content-Security-Policy forbids, as it should.)"""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {expression}")
        await asyncio.sleep(0.02)


async def add(url: str, order_id: str, event: dict[str, Any]) -> None:
    await asyncio.to_thread(append_sync, url, "orders", order_id, [event])


async def test_order_dashboard_live_failover_and_escaping(
    chromium: str, redis_url: str, pods, proxies, artifacts: Path
) -> None:
    from playwright.async_api import async_playwright

    a, b = spawn_pods(pods, redis_url, 2, **FAST)
    proxy = Proxy(a.port).start()
    proxies.append(proxy)
    page_csp = httpx.get(f"{proxy.url}/demo/orders").headers["content-security-policy"]
    assert "script-src 'self'" in page_csp
    for i in range(3):  # history: the page loads it over REST
        await add(b.url, f"order-{i}", placed(f"order-{i}", f"customer-{i}", 10 + i))
    await add(b.url, "order-0", status("shipped", "order-0"))
    # Noise the dashboard's filter must ignore.
    append_sync(b.url, "orders", "audit", [{"type": "audit.noted", "data": {}}])

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console: {msg.text}") if msg.type == "error" else None
                ),
            )
            await page.goto(f"{proxy.url}/demo/orders")
            rows = page.locator("#orders tr")
            await until(page, "window.orderDashboard?.state === 'open'", 10)
            await until(page, "document.querySelectorAll('#orders tr').length === 3")
            assert await page.locator("#count-shipped").text_content() == "1"

            # A new order shows live (no reload), and so does its status change. How fast is
            # make bench's to show (fan-out latency), not a timed assertion on a shared host.
            await add(b.url, "order-new", placed("order-new", "customer-new", 42.5))
            new_row = page.locator('tr[data-order-id="order-new"]')
            await new_row.wait_for(timeout=10_000)
            assert await new_row.locator("td.amount").text_content() == "$42.50"
            assert await new_row.locator(".badge").text_content() == "pending"
            await add(b.url, "order-new", status("shipped", "order-new"))
            await until(
                page,
                "document.querySelector('tr[data-order-id=\"order-new\"] .badge')"
                ".textContent === 'shipped'",
                10.0,
            )
            await page.screenshot(path=str(artifacts / "demo-orders-live.png"), full_page=True)

            # The pod serving the page dies; the proxy sends the page's reconnect to pod B.
            a.kill()
            proxy.retarget(b.port)
            for i in range(3, 8):
                await add(b.url, f"order-{i}", placed(f"order-{i}", f"customer-{i}", 20 + i))
            await add(b.url, "order-new", status("delivered", "order-new"))
            await add(b.url, "order-1", status("shipped", "order-1"))
            await add(b.url, "order-3", status("shipped", "order-3"))
            head = log_entries(redis_url, "orders")[-1][0]
            await until(page, f"window.orderDashboard.lastPosition === {head}", 20)
            await until(page, "window.orderDashboard.state === 'open'")
            want = expected(log_entries(redis_url, "orders"), Filter.parse("order.*"), 0)
            state = await page.evaluate(
                "({positions: orderDashboard.positions, anomalies: orderDashboard.anomalies})"
            )
            assert state["positions"] == want, "missed or repeated events"
            assert state["anomalies"] == 0
            await until(page, "document.querySelectorAll('#orders tr').length === 9")
            statuses = dict(
                zip(
                    await rows.evaluate_all("rs => rs.map(r => r.dataset.orderId)"),
                    await rows.locator(".badge").all_text_contents(),
                    strict=True,
                )
            )
            assert statuses == {
                "order-0": "shipped",
                "order-1": "shipped",
                "order-2": "pending",
                "order-3": "shipped",
                "order-4": "pending",
                "order-5": "pending",
                "order-6": "pending",
                "order-7": "pending",
                "order-new": "delivered",
            }
            assert await page.locator("#count-total").text_content() == "9"
            await page.screenshot(
                path=str(artifacts / "demo-orders-after-failover.png"), full_page=True
            )

            # Hostile data renders as the characters it is.
            await add(b.url, "order-xss", placed("order-xss", SCRIPT, IMG))
            xss = page.locator('tr[data-order-id="order-xss"]')
            await xss.wait_for(timeout=2000)
            cells = await xss.locator("td").all_text_contents()
            assert cells[1] == SCRIPT
            assert cells[2] == IMG
            await page.wait_for_timeout(300)  # an injected handler would have fired by now
            assert await page.evaluate("typeof window.pwned") == "undefined"
            assert await page.locator("#orders script, #orders img").count() == 0
            await page.get_by_text(SCRIPT).wait_for(state="visible")
            await page.locator("#safe-rendering summary").click()
            await page.screenshot(path=str(artifacts / "demo-orders-xss.png"), full_page=True)
            assert not problems, problems
        finally:
            await browser.close()


async def test_balance_page(chromium: str, redis_url: str, pods, artifacts: Path) -> None:
    from playwright.async_api import async_playwright

    (pod,) = spawn_pods(pods, redis_url, 1, **FAST)
    # The store does not exist yet: the page's REST read gets 404 and starts from empty.
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 760})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
            await page.goto(f"{pod.url}/demo/balance")
            await until(page, "window.balanceMonitor?.state === 'open'", 10)
            assert await page.locator("#balance").text_content() == "$0.00"
            append_sync(
                pod.url,
                "banking",
                "account-123",
                [
                    {"type": "money.deposited", "data": {"amount": 100}},
                    {"type": "money.withdrawn", "data": {"amount": 30.5}},
                ],
            )
            append_sync(  # another account: not ours
                pod.url,
                "banking",
                "account-9",
                [{"type": "money.deposited", "data": {"amount": 5}}],
            )
            balance = page.locator("#balance")
            await until(page, "document.getElementById('balance').textContent === '$69.50'", 2)
            # The page's own form appends a deposit; the live update brings it back.
            await page.fill("#amount", "0.1")
            await page.click("#deposit")
            await until(page, "document.getElementById('balance').textContent === '$69.60'", 2)
            assert await page.locator("#transactions tr").count() == 3
            amounts = await page.locator("#transactions td.amount").all_text_contents()
            assert amounts == ["+$0.10", "-$30.50", "+$100.00"], amounts
            # Counted as the seed's monitor counts it, and shown as what it did: a deposit of
            # -5 takes 5 away (it read "+-$5.00").
            append_sync(
                pod.url,
                "banking",
                "account-123",
                [{"type": "money.deposited", "data": {"amount": -5}}],
            )
            await until(page, "document.getElementById('balance').textContent === '$64.60'", 2)
            assert await page.locator("#transactions td.amount").first.text_content() == "-$5.00"
            append_sync(
                pod.url,
                "banking",
                "account-123",
                [{"type": "money.deposited", "data": {"amount": 5}}],
            )
            await until(page, "document.getElementById('balance').textContent === '$69.60'", 2)
            await page.screenshot(path=str(artifacts / "demo-balance.png"), full_page=True)
            # A fresh load rebuilds the same balance from REST.
            await page.reload()
            await until(page, "window.balanceMonitor?.state === 'open'")
            assert await balance.text_content() == "$69.60"
            other = await browser.new_page()
            await other.goto(f"{pod.url}/demo/balance?account=account-9")
            await until(other, "document.getElementById('balance').textContent === '$5.00'", 5)
            assert not problems, problems
        finally:
            await browser.close()


async def test_the_order_page_works_with_a_browser_token_alone(
    chromium: str, redis_url: str, pods
) -> None:
    """As the guide advises, the page gets a short-lived token, not an API key. A token opens
    the live stream only (the REST read answers 401): the page replays the history over the
    stream instead, then goes on live."""
    from playwright.async_api import async_playwright

    admin = {"X-API-Key": "admin-key-for-the-token-page-0123456789"}
    (pod,) = spawn_pods(
        pods,
        redis_url,
        1,
        DELTAGATE_AUTH="enabled",
        DELTAGATE_ADMIN_KEY=admin["X-API-Key"],
        DELTAGATE_TOKEN_SECRET="token-secret-for-the-demo-page-0123456789",
        **FAST,
    )
    for i in range(3):
        appended = httpx.post(
            f"{pod.url}/event-stores/orders/streams/order-{i}",
            json={"events": [placed(f"order-{i}")]},
            headers=admin,
        )
        assert appended.status_code == 201, appended.text
    minted = httpx.post(f"{pod.url}/event-stores/orders/ws-tokens", json={}, headers=admin)
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    assert httpx.get(f"{pod.url}/event-stores/orders/events").status_code == 401  # a page's read
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
            await page.goto(f"{pod.url}/demo/orders?token={token}")
            await until(page, "window.orderDashboard?.state === 'open'", 10)
            await until(page, "document.querySelectorAll('#orders tr').length === 3", 10)
            appended = httpx.post(
                f"{pod.url}/event-stores/orders/streams/order-9",
                json={"events": [placed("order-9")]},
                headers=admin,
            )
            assert appended.status_code == 201, appended.text
            await page.locator('tr[data-order-id="order-9"]').wait_for(timeout=10_000)
            assert await page.locator("#error").is_hidden()
            assert await page.evaluate("window.orderDashboard.anomalies") == 0
            assert not problems, problems
        finally:
            await browser.close()


async def test_a_restarted_dev_server_resets_the_page_which_shows_the_new_orders(
    chromium: str, pods, proxies, artifacts: Path
) -> None:
    """`make run` restarted under an open page: the in-memory store is new (a new epoch), the
    page's client resumes with its old cursor, is told `reset`, and the dashboard rebuilds from
    the new history."""
    from playwright.async_api import async_playwright

    from tests.harness import Pod

    dev = Pod({"DELTAGATE_AUTH": "disabled", **FAST}).start()  # embedded: no Redis URL
    pods.append(dev)
    proxy = Proxy(dev.port).start()
    proxies.append(proxy)
    for i in range(5):
        await add(dev.url, f"old-{i}", placed(f"old-{i}", "customer-old", 10 + i))
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{proxy.url}/demo/orders")
            await until(page, "window.orderDashboard?.state === 'open'", 10)
            await until(page, "document.querySelectorAll('#orders tr').length === 5")

            dev.stop()
            restarted = Pod({"DELTAGATE_AUTH": "disabled", **FAST}, port=dev.port).start()
            pods.append(restarted)
            for i in range(2):  # positions 1 and 2 again, in a new store
                await add(restarted.url, f"new-{i}", placed(f"new-{i}", "customer-new", 99))
            await until(page, "window.orderDashboard.resets === 1", 20)
            await until(page, "document.querySelectorAll('#orders tr').length === 2", 10)
            shown = await page.eval_on_selector_all(
                "#orders tr", "rows => rows.map(r => r.dataset.orderId).sort()"
            )
            assert shown == ["new-0", "new-1"]
            assert await page.evaluate("window.orderDashboard.anomalies") == 0
            # What the page counts as applied is the new history's, not both histories'.
            assert await page.evaluate("window.orderDashboard.positions") == [1, 2]
            await add(restarted.url, "new-2", placed("new-2", "customer-new", 1))
            await page.locator('tr[data-order-id="new-2"]').wait_for(timeout=5000)
            await page.screenshot(path=str(artifacts / "demo-orders-reset.png"), full_page=True)
        finally:
            await browser.close()
