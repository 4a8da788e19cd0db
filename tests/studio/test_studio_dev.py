"""Studio in headless Chromium against a real gateway in the embedded dev mode (no Redis URL,
no credentials): stores, streams, events, live tail, append form and safe rendering.
Screenshots go to tests/artifacts/studio-*.png (linked from docs/studio.md)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import Pod, wait_for
from tests.studio.conftest import api, append, unique

pytestmark = pytest.mark.timeout(60)

DASH = "\N{EN DASH}"  # the pager reads "1<en dash>25 of 28"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def open_studio(page: Any, gateway: Pod, route: str = "") -> None:
    page.goto(f"{gateway.url}/studio{route}")
    expect(page.locator("#auth-state")).to_have_text("Dev mode · no credentials needed")


def start_tail(page: Any, gateway: Pod, store: str, start: str = "latest") -> None:
    open_studio(page, gateway, f"#/s/{store}/tail")
    page.select_option("#tail-from", start)
    page.click("#tail-start")
    expect(page.locator("#tail-state")).to_have_attribute("data-state", "open")
    expect(page.locator("#tail-info")).to_have_attribute("data-from", re.compile(".+"))


def positions(page: Any, selector: str = "#tail-rows tr") -> list[int]:
    values = page.eval_on_selector_all(selector, "rows => rows.map(r => r.dataset.position)")
    return [int(v) for v in values]


def test_studio_is_served_with_a_strict_policy(dev_gateway: Pod) -> None:
    page = httpx.get(f"{dev_gateway.url}/studio")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy
    assert httpx.get(f"{dev_gateway.url}/studio/js/app.js").status_code == 200
    assert httpx.get(f"{dev_gateway.url}/studio/studio.css").status_code == 200
    for probe in ("/studio/../app.py", "/studio/%2e%2e/app.py", "/studio/nope.js", "/studio/.x"):
        assert httpx.get(f"{dev_gateway.url}{probe}").status_code == 404, probe


def test_lists_stores_streams_and_events(page: Any, dev_gateway: Pod, artifacts: Path) -> None:
    base = dev_gateway.url
    store = unique("studio-list")
    created = api(base, "POST", "/event-stores", {"name": store, "description": "made by the API"})
    assert created.status_code == 201, created.text
    for i in range(27):
        append(base, store, f"order-{i:02d}", [{"type": "order.placed", "data": {"n": i}}])
    append(base, store, "audit-1", [{"type": "audit.noted", "data": {"by": "test"}}])
    append(
        base,
        store,
        "order-00",
        [
            {"type": "order.shipped", "data": {"carrier": "dhl"}, "metadata": {"actor": "bob"}},
            {"type": "order.delivered", "data": {"signedBy": "alice"}},
        ],
    )

    open_studio(page, dev_gateway)
    row = page.locator(f'#stores-table tr[data-store="{store}"]')
    expect(row).to_be_visible()
    expect(row.locator("td").nth(0)).to_have_text("made by the API")
    expect(row.locator("td").nth(1)).to_have_text("28")  # streams
    expect(row.locator("td").nth(2)).to_have_text("30")  # events
    expect(row.locator("td").nth(3)).to_have_text("30")  # head position
    page.screenshot(path=str(artifacts / "studio-stores.png"), full_page=True)

    # Open it (keyboard): statistics, then its streams, paginated and searchable.
    row.locator("a").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#store-title")).to_have_text(store)
    expect(page.locator("#stat-streams")).to_have_text("28")
    expect(page.locator("#stat-events")).to_have_text("30")
    expect(page.locator("#stat-head")).to_have_text("30")
    page.select_option("#stream-page-size", "25")
    expect(page.locator("#streams-range")).to_have_text(f"1{DASH}25 of 28")
    expect(page.locator("#streams-table tbody tr")).to_have_count(25)
    page.click("#streams-next")
    expect(page.locator("#streams-range")).to_have_text(f"26{DASH}28 of 28")
    expect(page.locator("#streams-next")).to_be_disabled()
    page.fill("#stream-search", "audit")
    expect(page.locator("#streams-range")).to_have_text(f"1{DASH}1 of 1")
    expect(page.locator("#streams-table tbody tr")).to_have_attribute("data-stream", "audit-1")
    page.fill("#stream-search", "order-0")
    expect(page.locator("#streams-range")).to_have_text(f"1{DASH}10 of 10")
    page.screenshot(path=str(artifacts / "studio-streams.png"), full_page=True)

    # A stream's events: newest first by default, then oldest first; every field as text.
    page.click('#streams-table a:text-is("order-00")')
    expect(page.locator("#stream-title")).to_have_text("order-00")
    cards = page.locator("#stream-events li.event")
    expect(cards).to_have_count(3)
    expect(cards.locator(".event-type")).to_have_text(
        ["order.delivered", "order.shipped", "order.placed"]
    )
    expect(page.locator("#stream-info")).to_contain_text("Version 3")
    shipped = cards.nth(1)
    expect(shipped.locator("pre.data")).to_have_text('{\n  "carrier": "dhl"\n}')
    expect(shipped.locator("pre.metadata")).to_have_text('{\n  "actor": "bob"\n}')
    stored = httpx.get(f"{base}/event-stores/{store}/streams/order-00").json()["events"][1]
    expect(shipped).to_contain_text(stored["eventId"])
    expect(shipped).to_contain_text(stored["createdAt"])
    expect(shipped.locator(".badge")).to_have_text("#1")
    page.screenshot(path=str(artifacts / "studio-stream-events.png"), full_page=True)
    page.click('label[for="order-forward"]')
    expect(cards.locator(".event-type")).to_have_text(
        ["order.placed", "order.shipped", "order.delivered"]
    )


def test_delete_store_needs_typed_confirmation(page: Any, dev_gateway: Pod) -> None:
    base = dev_gateway.url
    store = unique("studio-del")
    assert api(base, "POST", "/event-stores", {"name": store}).status_code == 201
    open_studio(page, dev_gateway, f"#/s/{store}")
    expect(page.locator("#stat-events")).to_have_text("0")

    page.locator("#store-delete").focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-ok")).to_be_disabled()
    page.keyboard.press("Escape")  # cancel: nothing happens
    expect(dialog).to_be_hidden()
    assert api(base, "GET", f"/event-stores/{store}").status_code == 200

    page.click("#store-delete")
    page.fill("#confirm-input", store[:-1])
    expect(page.locator("#confirm-ok")).to_be_disabled()
    page.fill("#confirm-input", store)
    expect(page.locator("#confirm-ok")).to_be_enabled()
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#stores-title")).to_be_visible()
    expect(page.locator(f'#stores-table tr[data-store="{store}"]')).to_have_count(0)
    assert api(base, "GET", f"/event-stores/{store}").status_code == 404


def test_live_tail_shows_an_appended_event_within_a_second(
    page: Any, dev_gateway: Pod, artifacts: Path
) -> None:
    base = dev_gateway.url
    store = unique("studio-tail")
    append(base, store, "old-1", [{"type": "order.placed", "data": {"old": True}}])
    start_tail(page, dev_gateway, store)
    expect(page.locator("#tail-info")).to_have_attribute("data-from", "1")

    # Shown live, without a reload (how fast is make bench's to show, not a timed assertion).
    written = append(base, store, "order-7", [{"type": "order.placed", "data": {"total": 42}}])
    row = page.locator(f'#tail-rows tr[data-position="{written["globalPosition"]}"]')
    row.wait_for(timeout=10_000)
    expect(row).to_contain_text("order.placed")
    expect(row).to_contain_text("order-7")
    expect(row.locator("summary")).to_have_text('{"total":42}')
    assert positions(page) == [2]  # 'latest': the older event is not replayed

    # A burst: thousands of events, rendered in batches, never more rows than the cap. The
    # rate is that of the last second: kept as the page shows it, at its highest (by the
    # checks below it may have fallen back to 0 on a slow host).
    page.evaluate(
        """() => {
            window.highestRate = 0;
            const rate = document.getElementById('tail-rate');
            new MutationObserver(() => {
                const shown = parseFloat(rate.textContent.replace(/,/g, ''));
                window.highestRate = Math.max(window.highestRate, shown);
            }).observe(rate, { childList: true, characterData: true, subtree: true });
        }"""
    )
    batch = [{"type": f"burst.{i % 3}", "data": {"i": i}} for i in range(1000)]
    for n in range(3):
        append(base, store, f"burst-{n}", batch)
    expect(page.locator("#tail-received")).to_have_text("3,001", timeout=10_000)
    expect(page.locator("#tail-rows tr")).to_have_count(500)
    expect(page.locator("#tail-shown")).to_have_text("500")
    shown = positions(page)
    assert shown == list(range(3002, 2502, -1))  # the newest 500, newest on top
    assert page.evaluate("window.highestRate") > 0
    expect(page.locator("#tail-last")).to_have_text("3002")
    row = page.locator('#tail-rows tr[data-position="3002"]')
    row.locator("summary").click()
    expect(row.locator("pre.data")).to_have_text('{\n  "i": 999\n}')
    page.screenshot(path=str(artifacts / "studio-tail.png"), full_page=False)

    # Another tail from a number replays after it (exclusive), filtered by type and stream.
    page.fill("#tail-pattern", "burst.1, burst.2")
    page.fill("#tail-stream", "burst-0")
    page.select_option("#tail-from", "number")
    page.fill("#tail-position", "990")
    page.click("#tail-clear")
    page.click("#tail-start")
    expected = [p for p in range(991, 1003) if (p - 3) % 3 != 0][::-1]
    expect(page.locator("#tail-info")).to_contain_text("Caught up")
    expect(page.locator("#tail-rows tr")).to_have_count(len(expected))
    assert positions(page) == expected
    page.click("#tail-stop")
    expect(page.locator("#tail-state")).to_have_text("stopped")


def test_tail_over_sse_since_a_time(page: Any, dev_gateway: Pod) -> None:
    """Start from a time (the first event created at or after it), over Server-Sent Events, with
    the connection shown."""
    base = dev_gateway.url
    store = unique("studio-since")
    append(base, store, "before", [{"type": "a.old", "data": {}}] * 3)
    time.sleep(1.1)  # the picker has whole seconds: the next events are a second later
    written = append(base, store, "after", [{"type": "a.new", "data": {}}] * 2)
    since = written["events"][0]["createdAt"]  # ISO UTC with milliseconds
    open_studio(page, dev_gateway, f"#/s/{store}/tail")
    expect(page.locator("#tail-since")).to_be_hidden()
    page.select_option("#tail-from", "time")
    expect(page.locator("#tail-since")).to_be_visible()
    # datetime-local takes the browser's local time: give it the instant in that zone, to the
    # second (the events before were written at least a second earlier).
    local = page.evaluate(
        """(iso) => { const d = new Date(iso); d.setMilliseconds(0);
        const p = (n) => String(n).padStart(2, '0');
        return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T` +
               `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`; }""",
        since,
    )
    page.fill("#tail-since", local)
    page.select_option("#tail-transport", "sse")
    page.click("#tail-start")
    expect(page.locator("#tail-state")).to_have_attribute("data-state", "open")
    expect(page.locator("#tail-via")).to_have_text("SSE")
    expect(page.locator("#tail-via")).to_have_attribute("data-transport", "sse")
    expect(page.locator("#tail-info")).to_contain_text("Caught up")
    assert positions(page) == [5, 4]
    extra = append(base, store, "after", [{"type": "a.live", "data": {}}])
    expect(page.locator(f'#tail-rows tr[data-position="{extra["globalPosition"]}"]')).to_have_count(
        1
    )
    page.click("#tail-stop")
    # Back to the WebSocket: the indicator follows.
    page.select_option("#tail-transport", "websocket")
    page.select_option("#tail-from", "earliest")
    page.click("#tail-clear")
    page.click("#tail-start")
    expect(page.locator("#tail-via")).to_have_text("WebSocket")
    expect(page.locator("#tail-rows tr")).to_have_count(6)
    page.click("#tail-stop")


def test_paused_tail_buffers_with_a_count_and_resumes_in_order(
    page: Any, dev_gateway: Pod, artifacts: Path
) -> None:
    base = dev_gateway.url
    store = unique("studio-pause")
    append(base, store, "warmup", [{"type": "warm.up", "data": {}}])
    start_tail(page, dev_gateway, store)
    append(base, store, "steps", [{"type": "step.0", "data": {"n": 0}}])
    expect(page.locator("#tail-rows tr")).to_have_count(1)

    page.click("#tail-pause")
    expect(page.locator("#tail-pause")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#tail-pause")).to_have_text("Resume")
    for n in range(1, 6):  # five separate appends: five separate WebSocket messages
        append(base, store, "steps", [{"type": f"step.{n}", "data": {"n": n}}])
    buffered = page.locator("#tail-buffered")
    expect(buffered).to_have_text("Paused · 5 buffered")
    expect(page.locator("#tail-received")).to_have_text("6")
    expect(page.locator("#tail-rows tr")).to_have_count(1)  # nothing rendered while paused
    page.screenshot(path=str(artifacts / "studio-tail-paused.png"), full_page=False)

    page.click("#tail-pause")
    expect(buffered).to_be_hidden()
    expect(page.locator("#tail-rows tr")).to_have_count(6)
    assert positions(page) == [7, 6, 5, 4, 3, 2]
    expect(page.locator("#tail-rows td.type")).to_have_text([f"step.{n}" for n in range(5, -1, -1)])
    append(base, store, "steps", [{"type": "step.6", "data": {"n": 6}}])  # live again
    expect(page.locator("#tail-rows tr").first).to_have_attribute("data-position", "8")


def test_append_form_validates_json_and_shows_server_errors(
    page: Any, dev_gateway: Pod, artifacts: Path
) -> None:
    base = dev_gateway.url
    store = unique("studio-append")
    assert api(base, "POST", "/event-stores", {"name": store}).status_code == 201
    open_studio(page, dev_gateway, f"#/s/{store}/append")

    page.fill("#append-stream", "cart-1")
    page.fill("#append-type", "cart.item-added")
    page.fill("#append-data", '{"sku": "A-1", "qty": 2')
    page.click("#append-submit")
    error = page.locator("#append-data-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not valid JSON")
    expect(page.locator("#append-data")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#append-data")).to_be_focused()
    page.screenshot(path=str(artifacts / "studio-append-invalid.png"), full_page=True)
    stream = httpx.get(f"{base}/event-stores/{store}/streams/cart-1").json()
    assert stream["currentStreamVersion"] == 0  # nothing was sent

    page.fill("#append-data", "[1, 2]")
    page.click("#append-submit")
    expect(error).to_contain_text("must be a JSON object")

    page.fill("#append-data", '{"sku": "A-1", "qty": 2}')
    expect(error).to_be_hidden()
    page.fill("#append-metadata", '{"source": "studio"}')
    page.click("#append-submit")
    expect(page.locator("#append-ok")).to_contain_text("Appended 1 event to cart-1")
    expect(page.locator("#append-ok")).to_contain_text("global position 1")
    events = httpx.get(f"{base}/event-stores/{store}/streams/cart-1").json()["events"]
    assert [(e["type"], e["data"], e.get("metadata")) for e in events] == [
        ("cart.item-added", {"sku": "A-1", "qty": 2}, {"source": "studio"})
    ]
    expect(page.locator("#stat-events")).to_have_text("1")

    # The server's own validation errors are shown, field by field.
    page.fill("#append-type", "t" * 300)
    page.click("#append-submit")
    refused = page.locator("#append-server-error")
    expect(refused).to_contain_text("VALIDATION_ERROR")
    expect(refused.locator("li")).to_contain_text(["type"])
    assert refused.inner_text().count("at most 256") == 1, "said once, not in the title too"
    # And a version conflict.
    page.fill("#append-type", "cart.item-added")
    page.fill("#append-expected", "0")
    page.click("#append-submit")
    expect(refused).to_contain_text("STREAM_VERSION_CONFLICT")
    expect(page.locator("#append-expected-error")).to_be_visible()
    page.screenshot(path=str(artifacts / "studio-append-server-error.png"), full_page=True)

    # A stream id no URL path can hold is said so, and nothing is sent (it was a bare 404).
    page.fill("#append-expected", "")
    for unaddressable in ("a/b", "..", "."):
        page.fill("#append-stream", unaddressable)
        page.click("#append-submit")
        expect(page.locator("#append-stream-error")).to_contain_text("cannot be addressed")
    listed = httpx.get(f"{base}/event-stores/{store}/streams").json()["streams"]
    assert [s["streamId"] for s in listed] == ["cart-1"]
    # One made through the API (the multi-stream append) is listed; its page says why it
    # cannot be opened there, rather than a bare NOT_FOUND.
    made = httpx.post(
        f"{base}/event-stores/{store}/streams",
        json={"streams": [{"streamId": "a/b", "events": [{"type": "t", "data": {}}]}]},
    )
    assert made.status_code == 201, made.text
    open_studio(page, dev_gateway, f"#/s/{store}/stream/a%2Fb")
    expect(page.locator(".error-box, [role=alert]").first).to_contain_text("cannot be addressed")


SCRIPT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'
EVIL_STREAM = '<img src=x onerror="window.__pwned=4">'


def test_script_payloads_render_as_text(page: Any, dev_gateway: Pod, artifacts: Path) -> None:
    base = dev_gateway.url
    store = unique("studio-xss")
    evil_type = "<b>evil</b>.created"
    written = append(
        base,
        store,
        EVIL_STREAM,
        [
            {
                "type": evil_type,
                "data": {"note": SCRIPT, "html": IMG},
                "metadata": {"by": "</pre><script>window.__pwned = 3</script>"},
            }
        ],
    )

    # In a stream's events.
    open_studio(page, dev_gateway, f"#/s/{store}")
    page.locator("#streams-table tbody a").click()
    card = page.locator("#stream-events li.event")
    expect(card).to_have_count(1)
    expect(card.locator(".event-type")).to_have_text(evil_type)
    expect(card.locator("pre.data")).to_contain_text(SCRIPT)
    expect(card.locator("pre.data")).to_contain_text('<img src=x onerror=\\"window.__pwned = 2\\">')
    expect(card.locator("pre.metadata")).to_contain_text("</pre><script>")
    expect(page.locator("#stream-title")).to_have_text(EVIL_STREAM)
    page.screenshot(path=str(artifacts / "studio-xss.png"), full_page=True)

    # In the live tail (replayed from the start).
    start_tail(page, dev_gateway, store, start="earliest")
    row = page.locator(f'#tail-rows tr[data-position="{written["globalPosition"]}"]')
    expect(row.locator("td.type")).to_have_text(evil_type)
    expect(row.locator("td").nth(3)).to_have_text(EVIL_STREAM)
    expect(row.locator("summary")).to_contain_text(SCRIPT)
    row.locator("summary").click()
    expect(row.locator("pre.data")).to_contain_text(SCRIPT)

    main = page.locator("main")
    for tag in ("script", "img", "b"):
        expect(main.locator(tag)).to_have_count(0)
    assert page.evaluate("window.__pwned") is None


def test_subscriptions_are_created_and_deleted_from_the_page(
    page: Any, dev_gateway: Pod, artifacts: Path
) -> None:
    # The dev-mode pod delivers webhooks itself, so the created subscription is exercised end
    # to end: its deliveries verify against the secret the page showed once.
    from tests.webhooks.support import Receiver

    receiver = Receiver().start()
    try:
        base = dev_gateway.url
        store = unique("studio-subs")
        assert api(base, "POST", "/event-stores", {"name": store}).status_code == 201
        open_studio(page, dev_gateway, f"#/s/{store}/subscriptions")
        expect(page.locator("#subs-list .empty")).to_be_visible()

        page.click("#sub-new > summary")
        page.fill("#sub-filter", " , ")
        page.fill("#sub-url", "ftp://example.com/hook")
        page.click("#sub-create")
        expect(page.locator("#sub-filter-error")).to_be_visible()
        expect(page.locator("#sub-url-error")).to_contain_text("http://")
        expect(page.locator("#sub-filter")).to_be_focused()
        assert api(base, "GET", f"/event-stores/{store}/subscriptions").json()["totalCount"] == 0

        # The server's own refusal, field by field.
        page.fill("#sub-filter", "order.*")
        page.fill("#sub-url", "http://example.com/" + "a" * 5000)
        page.click("#sub-create")
        refused = page.locator("#sub-create-error")
        expect(refused).to_contain_text("INVALID_SUBSCRIPTION_CONFIG")
        expect(refused.locator("li")).to_contain_text(["longer than"])

        page.fill("#sub-filter", "order.*, payment.settled")
        page.fill("#sub-url", receiver.url)
        expect(page.locator("#sub-position")).to_have_value("latest")
        append(base, store, "order-1", [{"type": "order.placed", "data": {"n": 1}}])
        page.click("#sub-create")
        created = page.locator("#sub-created")
        expect(created).to_contain_text("Created subscription")
        secret = page.locator("#sub-secret").inner_text()
        assert secret.startswith("whsec_")
        page.screenshot(path=str(artifacts / "studio-subscription-created.png"), full_page=True)
        (sub,) = api(base, "GET", f"/event-stores/{store}/subscriptions").json()["subscriptions"]
        sub_id = sub["subscriptionId"]
        assert sub["eventFilter"] == ["order.*", "payment.settled"]
        assert "signingSecret" not in sub
        receiver.secrets[sub_id] = secret
        row = page.locator(f'#subs-table tr[data-subscription="{sub_id}"]')
        expect(row).to_contain_text(receiver.url)

        # From latest: what is appended from now on and matches arrives, signed with that secret.
        append(base, store, "order-1", [{"type": "user.seen", "data": {}}])
        append(base, store, "order-1", [{"type": "payment.settled", "data": {"n": 2}}])
        append(base, store, "order-2", [{"type": "order.shipped", "data": {"n": 3}}])
        wait_for(lambda: len(receiver.of(sub_id)) == 2, timeout=10, what="2 deliveries")
        assert sorted(d.event["data"]["n"] for d in receiver.of(sub_id)) == [2, 3]  # per stream
        assert receiver.requests == 2 and receiver.bad_signatures == 0

        # The same subscription again is the existing one; no secret is shown.
        page.click("#sub-create")
        expect(page.locator("#sub-existing")).to_contain_text(sub_id)
        expect(page.locator("#sub-secret")).to_have_count(0)

        # Delete: typed confirmation, then it is gone.
        row.locator("button.delete").click()
        dialog = page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert api(base, "GET", f"/event-stores/{store}/subscriptions/{sub_id}").status_code == 200
        row.locator("button.delete").click()
        page.fill("#confirm-input", sub_id)
        page.keyboard.press("Enter")
        expect(row).to_have_count(0)
        assert api(base, "GET", f"/event-stores/{store}/subscriptions/{sub_id}").status_code == 404
    finally:
        receiver.stop()


def test_live_tail_says_when_the_store_history_started_again(page: Any, dev_gateway: Pod) -> None:
    """A store deleted and created again under the tail: a visible notice (not only a console
    line), then the new history's events."""
    base = dev_gateway.url
    store = unique("studio-reset")
    append(base, store, "old", [{"type": "t.old", "data": {}}] * 3)
    start_tail(page, dev_gateway, store, "earliest")
    expect(page.locator("#tail-rows tr")).to_have_count(3)
    expect(page.locator("#tail-notice")).to_be_hidden()
    assert httpx.delete(f"{base}/event-stores/{store}", params={"confirm": "true"}).is_success
    append(base, store, "new", [{"type": "t.new", "data": {}}])
    notice = page.locator("#tail-notice")
    expect(notice).to_be_visible(timeout=10_000)
    expect(notice).to_have_attribute("data-kind", "reset")
    expect(notice).to_contain_text("deleted and created again")
    expect(page.locator('#tail-rows tr[data-position="1"]').first).to_contain_text("t.new")
