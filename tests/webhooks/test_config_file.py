"""Config files (``eventStores: [{name, subscriptions: [...]}]``): applied at ``serve --config``
start and by ``deltagate apply``, idempotently; bad files refused before anything is written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from broker import TargetPolicy
from gateway import cli
from gateway.app import create_app
from gateway.config_file import ConfigError, apply_file, load, plan
from gateway.settings import Settings
from tests.webhooks.support import TestClient

SEED = """
eventStores:
  - name: orders
    subscriptions:
      - id: orders-projection
        eventFilter: [order.placed, order.shipped, order.delivered]
        subscriberType: webhook
        webhook:
          url: ${SERVICE_URL}/api/projections/orders/events
          headers: {Authorization: "Bearer ${PROJECTION_TOKEN}"}
          retryPolicy: {maxAttempts: 10, backoffSeconds: 2}
      - id: audit
        eventFilter: "*"
        subscriberType: webhook
        webhook:
          url: https://audit.example.com/in
          signingSecret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  - name: banking
    description: Accounts
"""
ENV = {"SERVICE_URL": "https://svc.example.com", "PROJECTION_TOKEN": "s3cret"}


def write(tmp_path: Path, text: str, name: str = "deltagate.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cli_apply(redis_url: str, path: Path) -> Any:
    """``deltagate apply PATH --json``, in this process."""
    return CliRunner().invoke(
        cli.app,
        ["apply", str(path), "--json"],
        env={**ENV, "DELTAGATE_REDIS_URL": redis_url, "DELTAGATE_WEBHOOK_ALLOWED_NETWORKS": ""},
    )


def apply_now(redis_url: str, path: Path) -> list[Any]:
    async def go() -> list[Any]:
        client = aioredis.from_url(redis_url, decode_responses=True)
        try:
            return await apply_file(client, path, targets=TargetPolicy())
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_applying_twice_creates_nothing_twice(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = write(tmp_path, SEED)
    first = apply_now(redis_url, path)
    outcomes = [(a.store, a.subscription, a.outcome) for a in first]
    assert outcomes == [
        ("orders", None, "created"),
        ("orders", "orders-projection", "created"),
        ("orders", "audit", "created"),
        ("banking", None, "created"),
    ]
    generated = first[1].secret
    assert generated is not None and generated.startswith("whsec_")
    assert first[2].secret is None, "a declared secret is not echoed"

    # Again, through the CLI: nothing created, nothing changed.
    second = cli_apply(redis_url, path)
    assert second.exit_code == 0, second.output
    assert [line["outcome"] for line in json.loads(second.stdout)] == ["unchanged"] * 4

    settings = Settings(redis_url=redis_url, auth="disabled")
    with TestClient(create_app(settings)) as api:
        subs = api.get("/event-stores/orders/subscriptions").json()
        assert subs["totalCount"] == 2
        # Listed by creation time, in milliseconds: both may share one, so find it by id.
        by_id = {sub["subscriptionId"]: sub for sub in subs["subscriptions"]}
        projection = by_id["orders-projection"]
        assert projection["subscriber"]["config"]["url"] == (
            "https://svc.example.com/api/projections/orders/events"
        )
        assert projection["subscriber"]["config"]["headers"] == {"Authorization": "[redacted]"}
        assert api.get("/event-stores/banking").json()["description"] == "Accounts"
        stores = api.get("/event-stores").json()["totalCount"]
        assert stores == 2

    # A changed declaration is converged in place, keeping the subscription's progress.
    changed = write(tmp_path, SEED.replace("backoffSeconds: 2", "backoffSeconds: 5"))
    third = apply_now(redis_url, changed)
    assert [line.outcome for line in third] == [
        "unchanged",
        "updated",
        "unchanged",
        "unchanged",
    ]
    with TestClient(create_app(settings)) as api:
        got = api.get("/event-stores/orders/subscriptions/orders-projection").json()
        assert got["subscriber"]["config"]["retryPolicy"]["backoffSeconds"] == 5
        assert api.get("/event-stores/orders/subscriptions").json()["totalCount"] == 2


def test_serve_applies_its_config_at_start(redis_url: str, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        json.dumps(
            {
                "eventStores": [
                    {
                        "name": "orders",
                        "subscriptions": [
                            {
                                "id": "p",
                                "eventFilter": "order.*",
                                "subscriberType": "webhook",
                                "webhook": {"url": "http://127.0.0.1:9/hook"},
                            }
                        ],
                    }
                ]
            }
        ),
        "config.json",
    )
    settings = Settings(
        redis_url=redis_url, auth="disabled", config=path, webhook_allowed_networks="127.0.0.0/8"
    )
    for _ in range(2):  # a restart applies it again: still one subscription
        with TestClient(create_app(settings)) as api:
            subs = api.get("/event-stores/orders/subscriptions").json()
            assert subs["totalCount"] == 1 and subs["subscriptions"][0]["subscriptionId"] == "p"


BAD_FILES: list[tuple[str, str, str]] = [
    ("not yaml", "eventStores: [", "not valid YAML"),
    ("no eventStores", "stores: []", "must be {eventStores"),
    ("bad store name", "eventStores: [{name: Orders!}]", "eventStores[0].name"),
    (
        "unknown store field",  # (named: it was only "must be {name, ...}")
        "eventStores: [{name: orders, colour: red}]",
        "eventStores[0]: unknown field(s) colour",
    ),
    (
        "no id",
        "eventStores: [{name: orders, subscriptions: [{eventFilter: '*', subscriberType: webhook,"
        " webhook: {url: 'http://x.example'}}]}]",
        "subscriptions[0].id: required",
    ),
    (
        "bad url",
        "eventStores: [{name: orders, subscriptions: [{id: a, eventFilter: '*', subscriberType:"
        " webhook, webhook: {url: 'ftp://x'}}]}]",
        "subscriptions[0].webhook.url",
    ),
    (
        "absurd retries",
        "eventStores: [{name: orders, subscriptions: [{id: a, eventFilter: '*', subscriberType:"
        " webhook, webhook: {url: 'http://x.example', retryPolicy: {maxAttempts: 1000}}}]}]",
        "retryPolicy.maxAttempts",
    ),
    (
        "unknown field",
        "eventStores: [{name: orders, subscriptions: [{id: a, eventFilter: '*', subscriberType:"
        " webhook, webhook: {url: 'http://x.example', retry: 3}}]}]",
        "webhook.retry",
    ),
    (
        "unset variable",
        "eventStores: [{name: orders, subscriptions: [{id: a, eventFilter: '*', subscriberType:"
        " webhook, webhook: {url: '${NOT_SET_ANYWHERE_42}'}}]}]",
        "NOT_SET_ANYWHERE_42 is not set",
    ),
    (
        "bad settings",
        "eventStores: [{name: orders, settings: {retentionPeriodDays: -3}}]",
        "eventStores[0].settings.retentionPeriodDays",
    ),
    (
        "settings not an object",
        "eventStores: [{name: orders, settings: [1]}]",
        "eventStores[0].settings",
    ),
    (
        "duplicate id",
        "eventStores: [{name: orders, subscriptions: ["
        "{id: a, eventFilter: '*', subscriberType: webhook, webhook: {url: 'http://x.example'}},"
        "{id: a, eventFilter: 'b', subscriberType: webhook, webhook: {url: 'http://x.example'}}"
        "]}]",
        "declared twice",
    ),
]


@pytest.mark.parametrize(("why", "text", "problem"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_config_files_are_refused(why: str, text: str, problem: str, tmp_path: Path) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        plan(load(path), str(path), targets=TargetPolicy())
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_the_cli_refuses_a_bad_file_and_writes_nothing(redis_url: str, tmp_path: Path) -> None:
    text = (
        "eventStores: [{name: orders}, {name: billing, subscriptions: [{id: a, eventFilter: '*',"
        " subscriberType: webhook, webhook: {url: 'mailto:x'}}]}]"
    )
    done = cli_apply(redis_url, write(tmp_path, text))
    assert done.exit_code == 2
    assert "webhook.url" in done.stderr
    import redis

    assert redis.Redis.from_url(redis_url).exists("dg:{orders}:meta") == 0, "nothing written"


def test_expansion_is_only_in_strings(tmp_path: Path) -> None:
    doc: Any = load(write(tmp_path, "eventStores: [{name: '${N}'}]"), {"N": "orders"})
    assert doc == {"eventStores": [{"name": "orders"}]}


def test_store_settings_are_created_then_converged(redis_url: str, tmp_path: Path) -> None:
    """A store's ``settings`` (as DeltaBase's config declares them) are set at creation; applied
    again with other values they are merged in (``updated``), the keys the file does not name
    kept; the same file again changes nothing."""
    declared = (
        "eventStores: [{name: ledger, description: Money,"
        " settings: {retentionPeriodDays: 30, maxStreamSizeBytes: 1048576}}]"
    )
    first = apply_now(redis_url, write(tmp_path, declared))
    assert [(a.store, a.outcome) for a in first] == [("ledger", "created")]
    settings = Settings(redis_url=redis_url, auth="disabled")
    with TestClient(create_app(settings)) as api:
        api.patch("/event-stores/ledger/settings", json={"settings": {"custom": "kept"}})
        assert api.get("/event-stores/ledger").json()["settings"] == {
            "retentionPeriodDays": 30,
            "maxStreamSizeBytes": 1048576,
            "custom": "kept",
        }
    changed = declared.replace("retentionPeriodDays: 30", "retentionPeriodDays: 90")
    second = apply_now(redis_url, write(tmp_path, changed))
    assert [(a.store, a.outcome) for a in second] == [("ledger", "updated")]
    third = apply_now(redis_url, write(tmp_path, changed))
    assert [(a.store, a.outcome) for a in third] == [("ledger", "unchanged")]
    with TestClient(create_app(settings)) as api:
        assert api.get("/event-stores/ledger").json()["settings"] == {
            "retentionPeriodDays": 90,
            "maxStreamSizeBytes": 1048576,
            "custom": "kept",
        }


def test_apply_refuses_a_redis_that_would_evict_the_log(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a pod and ``import`` do: nothing is written into a Redis that may evict it."""
    import redis

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("maxmemory-policy", "volatile-lru")
    try:
        refused = cli_apply(redis_url, write(tmp_path, SEED))
        assert refused.exit_code != 0, refused.output
        assert "volatile-lru" in refused.output
        assert admin.dbsize() == 0  # no store, no subscription
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.close()
