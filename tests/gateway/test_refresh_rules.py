"""The rules of ``{"action": "refresh"}`` (gateway/ws/refresh.py), against a real Authenticator
and TokenSigner: renew, never widen, keep what the connection's subscriptions need."""

from __future__ import annotations

from typing import Any

import fakeredis.aioredis
import pytest

from broker import Content, Filter, KeyStore
from gateway.auth import Authenticator, Principal
from gateway.settings import Settings
from gateway.ws import protocol
from gateway.ws.refresh import renewed

SECRET = "secret-for-the-refresh-rules-0123456789"


@pytest.fixture
async def auth() -> Any:
    redis = fakeredis.aioredis.FakeRedis(decode_responses=True)
    settings = Settings(auth="enabled", token_secret=SECRET, admin_key="admin-for-rules-0123")
    yield Authenticator(settings, KeyStore(redis))
    await redis.aclose()


def mint(auth: Authenticator, *, store: str = "alpha", **kwargs: Any) -> str:
    token, _ = auth.tokens.mint(key_id="admin", store=store, ttl=60, **kwargs)
    return token


async def current(auth: Authenticator, **kwargs: Any) -> Principal:
    return await auth.verify_token(mint(auth, **kwargs), "alpha")


def test_refresh_message_parses() -> None:
    assert protocol.parse('{"action": "refresh", "token": "t"}') == protocol.Refresh("t")
    for bad in ('{"action": "refresh"}', '{"action": "refresh", "token": 5}'):
        with pytest.raises(protocol.ProtocolError) as exc:
            protocol.parse(bad)
        assert exc.value.code == "VALIDATION_ERROR"


async def test_the_same_narrowing_renews(auth: Authenticator) -> None:
    old = await current(auth, patterns=["order.*"], stream_id="o-1")
    new = await renewed(
        auth,
        "alpha",
        old,
        mint(auth, patterns=["order.*"], stream_id="o-1"),
        [Filter.parse("order.placed", "o-1")],
    )
    assert new.narrowing == old.narrowing and new.expires_at is not None


async def test_narrower_is_fine_when_it_covers_the_subscriptions(auth: Authenticator) -> None:
    old = await current(auth, patterns=["order.*"])
    token = mint(auth, patterns=["order.placed"])
    new = await renewed(auth, "alpha", old, token, [Filter.parse("order.placed")])
    assert new.narrowing is not None and new.narrowing.patterns == ("order.placed",)
    with pytest.raises(protocol.ProtocolError) as exc:
        await renewed(auth, "alpha", old, token, [Filter.parse("order.*")])
    assert exc.value.code == "FORBIDDEN"


@pytest.mark.parametrize(
    "wider",
    [
        {},  # no narrowing at all
        {"patterns": ["*"]},
        {"patterns": ["order.*", "user.*"]},
        {"patterns": ["order.*"], "stream_id": None},  # the stream limit dropped
    ],
)
async def test_wider_is_refused(auth: Authenticator, wider: dict[str, Any]) -> None:
    old = await current(auth, patterns=["order.*"], stream_id="o-1")
    with pytest.raises(protocol.ProtocolError) as exc:
        await renewed(auth, "alpha", old, mint(auth, **wider), [])
    assert exc.value.code == "FORBIDDEN"


async def test_a_content_limit_may_not_be_dropped(auth: Authenticator) -> None:
    limit = Content.parse({"data": {"tenant": "t1"}})
    old = await current(auth, patterns=["order.*"], content=limit)
    with pytest.raises(protocol.ProtocolError):
        await renewed(auth, "alpha", old, mint(auth, patterns=["order.*"]), [])
    subscription = Filter.parse("order.*").within(limit)
    same = mint(auth, patterns=["order.*"], content=limit)
    assert (await renewed(auth, "alpha", old, same, [subscription])).narrowing is not None


async def test_other_store_and_junk_are_refused(auth: Authenticator) -> None:
    old = await current(auth)
    with pytest.raises(protocol.ProtocolError) as exc:
        await renewed(auth, "alpha", old, mint(auth, store="beta"), [])
    assert exc.value.code == "FORBIDDEN"
    with pytest.raises(protocol.ProtocolError) as exc:
        await renewed(auth, "alpha", old, "junk", [])
    assert exc.value.code == "UNAUTHORIZED"


async def test_a_stricter_content_limit_renews_and_a_different_one_is_refused(
    auth: Authenticator,
) -> None:
    """Narrower means what it says: a ``match`` holding the old one and more, a ``query`` whose
    items lie inside the old ones (fewer types, more tags). The subscriptions must still fit."""
    old_match = Content.parse({"data": {"tenant": "t1"}})
    old = await current(auth, patterns=["order.*"], content=old_match)
    stricter = Content.parse({"data": {"tenant": "t1", "region": "eu"}, "metadata": {"v": 1}})
    token = mint(auth, patterns=["order.*"], content=stricter)
    assert (await renewed(auth, "alpha", old, token, [])).narrowing is not None
    # A subscription made under the old limit sees more than the new one allows: refused;
    # one whose own match is as strict fits.
    with pytest.raises(protocol.ProtocolError) as exc:
        await renewed(auth, "alpha", old, token, [Filter.parse("order.*").within(old_match)])
    assert exc.value.code == "FORBIDDEN"
    fits = Filter.parse("order.*", None, stricter).within(old_match)
    assert (await renewed(auth, "alpha", old, token, [fits])).narrowing is not None
    for other in ({"data": {"tenant": "t2"}}, {"metadata": {"tenant": "t1"}}):
        with pytest.raises(protocol.ProtocolError) as exc:
            await renewed(
                auth,
                "alpha",
                old,
                mint(auth, patterns=["order.*"], content=Content.parse(other)),
                [],
            )
        assert exc.value.code == "FORBIDDEN", other

    query = {"items": [{"types": ["order.placed", "user.created"], "tags": ["t:1"]}]}
    old = await current(auth, patterns=["*"], content=Content.parse(None, query))
    narrower = [
        {"items": [{"types": ["order.placed"], "tags": ["t:1"]}]},
        {"items": [{"types": ["order.placed", "user.created"], "tags": ["t:1", "r:eu"]}]},
    ]
    for q in narrower:
        token = mint(auth, patterns=["*"], content=Content.parse(None, q))
        assert (await renewed(auth, "alpha", old, token, [])).narrowing is not None, q
    wider = [
        {"items": [{"types": ["order.placed", "order.paid"], "tags": ["t:1"]}]},
        {"items": [{"types": ["order.placed"]}]},  # its tag dropped
        {"items": [{"tags": ["t:1"]}]},  # any type
    ]
    for q in wider:
        token = mint(auth, patterns=["*"], content=Content.parse(None, q))
        with pytest.raises(protocol.ProtocolError) as exc:
            await renewed(auth, "alpha", old, token, [])
        assert exc.value.code == "FORBIDDEN", q


async def test_no_narrowing_renews_a_token_that_allowed_everything(auth: Authenticator) -> None:
    old = await current(auth, patterns=["*"])
    assert (await renewed(auth, "alpha", old, mint(auth), [Filter.parse("*")])).narrowing is None
