"""Studio against a deployment on the private Redis: webhook subscriptions with a real
`deltagate dispatcher` (dead letters redriven from the page), and the credentials flow with auth
enabled (the page asks for a key, keeps it in session storage only, never puts it in a URL, and
tails over a short-lived token)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Pod, free_port, spawn_pods, wait_for
from tests.studio.conftest import Dispatcher, Receiver, api, append, unique

pytestmark = pytest.mark.timeout(60)

FAST = {"DELTAGATE_POLL_INTERVAL": "0.2", "DELTAGATE_DRAIN_SECONDS": "0.2"}
LOOPBACK_HOOKS = {"DELTAGATE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
"""The receiver listens on 127.0.0.1, which a deployment refuses unless allowed."""
ADMIN_KEY = "dg_studio-test-admin-key-0123456789abcdefghijklmnop"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def dead_letters(base: str, store: str, sub_id: str) -> dict[str, Any]:
    response = api(base, "GET", f"/event-stores/{store}/subscriptions/{sub_id}/dead-letters")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_dead_letters_are_redriven_from_the_page(
    redis_url: str, pods: list[Pod], page: Any, artifacts: Path
) -> None:
    (gateway,) = spawn_pods(pods, redis_url, 1, **FAST, **LOOPBACK_HOOKS)
    dispatcher = Dispatcher(redis_url)
    receiver = Receiver(free_port())  # not listening yet: deliveries are refused
    try:
        dispatcher.start()
        base = gateway.url
        store = unique("studio-hooks")
        assert api(base, "POST", "/event-stores", {"name": store}).status_code == 201
        made = api(
            base,
            "POST",
            f"/event-stores/{store}/subscribe",
            {
                "eventFilter": "order.*",
                "subscriber": {
                    "type": "webhook",
                    "config": {
                        "url": f"http://127.0.0.1:{receiver.port}/hook",
                        "retryPolicy": {"maxAttempts": 1, "backoffSeconds": 0.1},
                    },
                },
            },
        )
        assert made.status_code == 201, made.text
        sub_id = made.json()["subscriptionId"]
        written = [
            append(base, store, f"order-{n}", [{"type": "order.placed", "data": {"n": n}}])
            for n in range(3)
        ]
        wait_for(
            lambda: dead_letters(base, store, sub_id)["totalCount"] == 3,
            timeout=15,
            what=f"3 dead letters (dispatcher log: {dispatcher.log()})",
        )
        letters = dead_letters(base, store, sub_id)["deadLetters"]
        ids = [letter["event"]["eventId"] for letter in letters]
        assert [letter["event"]["globalPosition"] for letter in letters] == [
            w["globalPosition"] for w in written
        ]

        page.goto(f"{base}/studio#/s/{store}/subscriptions")
        expect(page.locator("#auth-state")).to_have_text("Dev mode · no credentials needed")
        row = page.locator(f'#subs-table tr[data-subscription="{sub_id}"]')
        expect(row.locator("[data-status]")).to_have_text("active")
        expect(row).to_contain_text(f"http://127.0.0.1:{receiver.port}/hook")
        # (With maxAttempts 1 the dispatcher dead-letters without recording the subscription's
        # lastError; the dead letters below carry theirs.)
        expect(row.locator("td").nth(5)).to_have_text("3")  # dead letters
        page.screenshot(path=str(artifacts / "studio-subscriptions.png"), full_page=True)

        # Pause and resume from the list.
        row.locator("button[data-action]").click()
        expect(row.locator("[data-status]")).to_have_text("paused")
        assert api(base, "GET", f"/event-stores/{store}/subscriptions/{sub_id}").json()[
            "status"
        ] == ("paused")
        row.locator("button[data-action]").click()
        expect(row.locator("[data-status]")).to_have_text("active")
        assert api(base, "GET", f"/event-stores/{store}/subscriptions/{sub_id}").json()[
            "status"
        ] == ("active")

        # The dead letters; the endpoint is back up now.
        row.locator("th a").click()
        table = page.locator("#dead-table tbody tr")
        expect(table).to_have_count(3)
        expect(table.first.locator("td").nth(3)).to_have_text("1")  # attempts
        expect(table.first.locator("td").nth(4)).to_have_text(letters[0]["lastError"])
        assert letters[0]["lastError"]
        expect(page.locator("#redrive-all")).to_have_text("Redrive all (3)")
        page.screenshot(path=str(artifacts / "studio-dead-letters.png"), full_page=True)
        receiver.start()

        # Redrive one: it is delivered, the other two stay.
        page.locator(f'#dead-table tr[data-event-id="{ids[1]}"] button.redrive').click()
        expect(page.locator("#redrive-result")).to_have_text("Queued 1 dead letter for redelivery.")
        wait_for(lambda: ids[1] in receiver.event_ids(), timeout=10, what="the redelivery")
        assert dead_letters(base, store, sub_id)["totalCount"] == 2
        expect(table).to_have_count(2)
        expect(page.locator("#redrive-all")).to_have_text("Redrive all (2)")

        # Redrive all.
        page.click("#redrive-all")
        expect(page.locator("#redrive-result")).to_have_text(
            "Queued 2 dead letters for redelivery."
        )
        wait_for(lambda: set(ids) <= set(receiver.event_ids()), timeout=10, what="all redeliveries")
        assert dead_letters(base, store, sub_id)["totalCount"] == 0
        expect(page.locator("#no-dead-letters")).to_be_visible()
        expect(page.locator("#sub-dead-count")).to_have_text("0")
        page.screenshot(path=str(artifacts / "studio-redriven.png"), full_page=True)
    finally:
        dispatcher.stop()
        receiver.stop()


def test_auth_asks_for_a_key_and_never_puts_it_in_a_url(
    redis_url: str, pods: list[Pod], page: Any, artifacts: Path
) -> None:
    (gateway,) = spawn_pods(
        pods,
        redis_url,
        1,
        **FAST,
        DELTAGATE_AUTH="enabled",
        DELTAGATE_ADMIN_KEY=ADMIN_KEY,
        DELTAGATE_TOKEN_SECRET="studio-test-token-secret-0123456789",
    )
    base = gateway.url
    store = unique("studio-auth")
    assert api(base, "GET", "/event-stores").status_code == 401
    assert api(base, "POST", "/event-stores", {"name": store}, ADMIN_KEY).status_code == 201
    append(base, store, "acct-1", [{"type": "account.opened", "data": {}}], ADMIN_KEY)

    sockets: list[str] = []
    requests: list[tuple[str, dict[str, str]]] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on("request", lambda request: requests.append((request.url, request.headers)))

    page.goto(f"{base}/studio")
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#auth-state")).to_have_text("API key required")
    expect(page.locator("#api-key")).to_be_focused()
    expect(page.locator("#api-key")).to_have_attribute("type", "password")

    page.fill("#api-key", "dg_wrong-key")
    page.keyboard.press("Enter")
    expect(page.locator("#api-key-status")).to_contain_text("refused")
    page.fill("#api-key", ADMIN_KEY)
    page.screenshot(path=str(artifacts / "studio-auth.png"), full_page=True)
    page.keyboard.press("Enter")
    expect(page.locator(f'#stores-table tr[data-store="{store}"]')).to_be_visible()
    expect(page.locator("#auth-state")).to_have_text(f"API key …{ADMIN_KEY[-4:]} · this tab only")
    assert page.evaluate("sessionStorage.getItem('deltagate.studio.apiKey')") == ADMIN_KEY
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""

    # The live tail goes over a token minted with the key.
    page.goto(f"{base}/studio#/s/{store}/tail")
    page.click("#tail-start")
    expect(page.locator("#tail-state")).to_have_attribute("data-state", "open")
    written = append(base, store, "acct-1", [{"type": "account.credited", "data": {}}], ADMIN_KEY)
    page.locator(f'#tail-rows tr[data-position="{written["globalPosition"]}"]').wait_for(
        timeout=1000
    )
    # A reload keeps the key (same tab) without asking again.
    page.reload()
    expect(page.locator("#tail-form")).to_be_visible()
    expect(page.locator("#key-form")).to_have_count(0)

    assert sockets, "the tail opened no WebSocket"
    for url in sockets:
        assert re.search(r"[?&]token=[^&]+", url), url
        assert ADMIN_KEY not in url and "apiKey" not in url, url
    for url, _ in requests:
        assert ADMIN_KEY not in url, url
    assert ADMIN_KEY not in page.url
    api_calls = [headers for url, headers in requests if "/api/event-stores" in url]
    assert api_calls
    assert {h.get("x-api-key") for h in api_calls} <= {None, ADMIN_KEY, "dg_wrong-key"}
    assert any(h.get("x-api-key") == ADMIN_KEY for h in api_calls)
    minted = [url for url, _ in requests if url.endswith("/ws-tokens")]
    assert minted, "no token was minted for the WebSocket"

    # Forgetting the key asks again.
    page.click("#forget-key")
    expect(page.locator("#key-form")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('deltagate.studio.apiKey')") is None
