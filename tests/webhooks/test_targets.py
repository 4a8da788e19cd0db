"""The SSRF guard (issue 13): webhook URLs may only reach public addresses unless the operator
allows a network; checked when a subscription is declared (literal addresses and loopback names)
and at every connection against the addresses the name resolves to, connecting to the checked
address. ``lastError`` tells no connection failure from another.

Nothing here sends a packet anywhere but 127.0.0.1: addresses elsewhere are only ever refused at
validation, or handed out by a stub resolver to a guard that refuses them before connecting."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from broker import SUBSCRIPTION_REQUEST_SCHEMA, TargetPolicy, parse_subscription
from broker.webhooks import WebhookConfig, new_secret, secret_key
from broker.webhooks.delivery import (
    CONNECTION_FAILED,
    INVALID_REQUEST,
    USER_AGENT,
    Attempt,
    Envelope,
    Sender,
    Target,
)
from gateway.app import create_app
from gateway.settings import Settings
from tests.webhooks.conftest import STORE
from tests.webhooks.servers import Listening, read_request, status_line
from tests.webhooks.support import TestClient

REFUSED = [
    "127.0.0.1",
    "127.9.9.9",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "169.254.169.254",
    "169.254.1.1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.10",
    "192.0.0.8",
    "192.0.0.1",
    "192.0.0.170",
    "::1",
    "::",
    "fc00::1",
    "fd00:ec2::254",
    "fe80::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "2002:a00:1::1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "192.0.0.9"]


def test_the_policy_refuses_every_non_public_address() -> None:
    policy = TargetPolicy()
    for address in REFUSED:
        assert policy.refusal(ipaddress.ip_address(address)) is not None, address
    for address in PUBLIC:
        assert policy.refusal(ipaddress.ip_address(address)) is None, address


def test_allowed_networks_open_exactly_themselves() -> None:
    policy = TargetPolicy.build("10.0.0.0/8, fd12:3456::/32")
    assert policy.refusal(ipaddress.ip_address("10.200.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("fd12:3456::9")) is None
    assert policy.refusal(ipaddress.ip_address("11.0.0.1")) is None, "public anyway"
    assert policy.refusal(ipaddress.ip_address("192.168.0.1")) is not None
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is not None
    assert policy.refusal(ipaddress.ip_address("::ffff:10.0.0.1")) is None, "mapped: judged as v4"
    dev = TargetPolicy.build("", loopback=True)
    assert dev.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert dev.refusal(ipaddress.ip_address("::1")) is None
    assert dev.refusal(ipaddress.ip_address("169.254.169.254")) is not None


def test_a_bad_allowed_networks_setting_stops_the_start() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not a network"):
        Settings(redis_url="redis://127.0.0.1:1", webhook_allowed_networks="10.0.0.0/33")
    with pytest.raises(ValueError, match="'intranet' is not a network"):
        Settings(webhook_allowed_networks="10.0.0.0/8,intranet")


# -- at validation ------------------------------------------------------------------------------


def hosts_for(address: str) -> list[str]:
    if ":" in address:
        return [f"[{address}]"]
    return [address]


REFUSED_HOSTS = [h for a in REFUSED for h in hosts_for(a)] + [
    "localhost",
    "LOCALHOST.",
    "hooks.localhost",
    "2130706433",  # 127.0.0.1 as one number, as inet_aton reads it
    "0x7f.0.0.1",
    "127.1",
    "127.0.0.1.",
    "0x7f.0.0.1.",
    "0251.0376.0251.0376",  # 169.254.169.254 in octal
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits: IDNA reads 127.0.0.1
    "127\u30020\u30020\u30021",  # ideographic full stops: IDNA reads them as dots
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",  # full-width localhost
]


def sdk(url: str, **config: Any) -> dict[str, Any]:
    return {"eventFilter": "*", "subscriber": {"type": "webhook", "config": {"url": url, **config}}}


def test_subscribe_refuses_urls_naming_refused_addresses(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, auth="disabled")
    with TestClient(create_app(settings)) as api:
        assert api.post("/event-stores", json={"name": STORE}).status_code == 201
        for host in REFUSED_HOSTS:
            for body in (
                sdk(f"http://{host}:8080/hook"),
                {"id": "x", "eventFilter": "*", "subscriberType": "webhook",
                 "webhook": {"url": f"https://user:pw@{host}/hook"}},
            ):  # fmt: skip
                response = api.post(f"/event-stores/{STORE}/subscribe", json=body)
                assert response.status_code == 400, (host, response.text)
                found = response.json()
                assert found["error"] == "INVALID_SUBSCRIPTION_CONFIG", found
                (detail,) = found["details"]
                assert detail["field"] in ("subscriber.config.url", "webhook.url"), detail
                assert "public addresses" in detail["message"], detail
                assert "DELTAGATE_WEBHOOK_ALLOWED_NETWORKS" in detail["message"], detail
                assert "pw" not in response.text
        listed = api.get(f"/event-stores/{STORE}/subscriptions").json()
        assert listed["totalCount"] == 0, "nothing half-written"


def test_validation_honours_allowed_networks_and_names() -> None:
    # Validation alone (nothing is written, nothing would deliver).
    strict = TargetPolicy()
    allowing = TargetPolicy.build("10.0.0.0/8")
    made = parse_subscription(sdk("http://10.1.2.3:9000/hook"), targets=allowing)
    assert made.config.url == "http://10.1.2.3:9000/hook"
    with pytest.raises(Exception, match="public addresses"):
        parse_subscription(sdk("http://10.1.2.3:9000/hook"), targets=strict)
    # A name is checked at every connection, by the addresses it resolves to.
    assert parse_subscription(sdk("https://hooks.example.com/in"), targets=strict)


def test_config_files_refuse_them_too(tmp_path: Any) -> None:
    from gateway.config_file import ConfigError, plan

    document = {
        "eventStores": [
            {
                "name": STORE,
                "subscriptions": [
                    {
                        "id": "meta",
                        "eventFilter": "*",
                        "subscriberType": "webhook",
                        "webhook": {"url": "http://169.254.169.254/latest/meta-data/"},
                    }
                ],
            }
        ]
    }
    with pytest.raises(ConfigError) as refused:
        plan(document, "test.yaml", targets=TargetPolicy())
    (problem,) = refused.value.problems
    assert "subscriptions[0].webhook.url" in problem and "link-local" in problem
    assert plan(document, "test.yaml", targets=TargetPolicy.build("169.254.0.0/16"))


# -- headers and credentials -----------------------------------------------------------------


BAD_HEADERS = [
    {"Webhook-Id": "x"},
    {"webhook-anything": "x"},
    {"Host": "internal"},
    {"Content-Length": "1"},
    {"Transfer-Encoding": "chunked"},
    {"Connection": "close"},
    {"Keep-Alive": "1"},
    {"Upgrade": "h2c"},
    {"X-A": "line\r\nInjected: yes"},
    {"X-A": "nul\x00"},
    {"X-A": "caf\u00e9"},
    {"X-A\r\nB": "x"},
    {f"X-{i}": "v" for i in range(33)},
    {f"X-{i}": "v" * 3000 for i in range(6)},
]


def test_bad_headers_are_refused(api: TestClient, store: str) -> None:
    for headers in BAD_HEADERS:
        response = api.post(
            f"/event-stores/{store}/subscribe", json=sdk("https://h.example.com/", headers=headers)
        )
        assert response.status_code == 400, (headers, response.text)
        assert response.json()["error"] == "INVALID_SUBSCRIPTION_CONFIG", response.text
    fine = {"Authorization": "Bearer t0ken", "X-Tenant": "a b\tc", "User-Agent": "mine"}
    response = api.post(
        f"/event-stores/{store}/subscribe", json=sdk("https://h.example.com/", headers=fine)
    )
    assert response.status_code == 201, response.text


UNSENDABLE = [
    # (url, headers, the field named): each could never be sent, so none is accepted.
    ("https://u:s3cr3t@h.example.com/in", {"Authorization": "Bearer t"}, "headers.Authorization"),
    (
        "https://u@h.example.com/in",
        {"X-A": "x", "authorization": "Bearer t"},
        "headers.authorization",
    ),
    ("https://ex\u00e4mple..com/in", None, "url"),  # an empty label
    ("https://" + "\u00e4" * 64 + ".example.com/in", None, "url"),  # a label over 63
    ("https://h.example.com:65536/in", None, "url"),
]


def test_what_could_never_be_sent_is_refused_at_create(api: TestClient, store: str) -> None:
    for url, headers, field in UNSENDABLE:
        config = {"url": url} if headers is None else {"url": url, "headers": headers}
        for request, prefix in (
            (sdk(**config), "subscriber.config."),
            ({"id": "x", "eventFilter": "*", "subscriberType": "webhook", "webhook": config},
             "webhook."),
        ):  # fmt: skip
            response = api.post(f"/event-stores/{store}/subscribe", json=request)
            assert response.status_code == 400, (url, response.text)
            found = response.json()
            assert found["error"] == "INVALID_SUBSCRIPTION_CONFIG", found
            assert [d["field"] for d in found["details"]] == [prefix + field], found
            assert "s3cr3t" not in response.text
    assert api.get(f"/event-stores/{store}/subscriptions").json()["totalCount"] == 0
    # Each part alone can be sent (validation only: nothing is written).
    for url, headers in (
        ("https://u:s3cr3t@h.example.com/in", {"X-A": "x"}),
        ("https://h.example.com/in", {"Authorization": "Bearer t"}),
        ("https://b\u00fccher.example/in", {"X-A": "x"}),
    ):
        assert parse_subscription(sdk(url, headers=headers), targets=TargetPolicy())


def test_a_config_file_url_that_is_not_unicode_is_refused() -> None:
    # YAML's "\\udce9" escape gives a lone surrogate (JSON bodies cannot): it was accepted,
    # then could be neither stored (the codec refuses it) nor sent.
    from gateway.config_file import ConfigError, plan

    webhook = {"url": "https://h.example.com/caf\udce9"}
    subscription = {"id": "x", "eventFilter": "*", "subscriberType": "webhook", "webhook": webhook}
    document = {"eventStores": [{"name": STORE, "subscriptions": [subscription]}]}
    with pytest.raises(ConfigError) as refused:
        plan(document, "test.yaml", targets=TargetPolicy())
    (problem,) = refused.value.problems
    assert problem.startswith("eventStores[0].subscriptions[0].webhook.url: is not a valid URL")


def test_a_password_in_the_url_is_never_shown(api: TestClient, store: str) -> None:
    url = "https://hook-user:s3cr3t-pw@hooks.example.com/in"
    made = api.post(f"/event-stores/{store}/subscribe", json=sdk(url))
    assert made.status_code == 201, made.text
    shown = "https://hook-user:[redacted]@hooks.example.com/in"
    assert made.json()["subscriber"]["config"]["url"] == shown
    sub_id = made.json()["subscriptionId"]
    got = api.get(f"/event-stores/{store}/subscriptions/{sub_id}")
    listed = api.get(f"/event-stores/{store}/subscriptions")
    for response in (made, got, listed):
        assert "s3cr3t-pw" not in response.text
    assert got.json()["subscriber"]["config"]["url"] == shown
    again = api.post(f"/event-stores/{store}/subscribe", json=sdk(url))
    assert again.json()["isExistingSubscription"] is True, "the duplicate rule sees the password"


def test_the_schema_is_the_validators() -> None:
    sdk_form = SUBSCRIPTION_REQUEST_SCHEMA["oneOf"][0]
    assert sdk_form["required"] == ["subscriber"], "eventFilter, or a query"
    assert sdk_form["additionalProperties"] is False


# -- at every connection: a stub resolver, receivers on 127.0.0.1 only ------------------------


Reply = Callable[[asyncio.StreamReader], Awaitable[bytes | None]]


def serving(reply: Reply) -> Listening:
    """A server on 127.0.0.1 that counts connections and answers with ``reply``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = await reply(reader)
        if answer is not None:
            writer.write(answer)
            await writer.drain()

    return Listening(handle)


async def http(status: int) -> Callable[[asyncio.StreamReader], Awaitable[bytes]]:
    async def reply(reader: asyncio.StreamReader) -> bytes:
        reply.heads.append(await read_request(reader))  # type: ignore[attr-defined]
        return status_line(status)

    reply.heads = []  # type: ignore[attr-defined]
    return reply


class StubResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return list(self.answers[host])


@pytest.fixture
async def send() -> AsyncIterator[Callable[..., Awaitable[Attempt]]]:
    made: list[Target] = []

    async def deliver(
        url: str, policy: TargetPolicy, resolver: StubResolver | None = None, timeout: float = 5
    ) -> Attempt:
        sender = Sender(timeout=timeout, max_connections=4, targets=policy, resolver=resolver)
        config = WebhookConfig.build(event_filter="*", url=url)
        target = Target(sender, config, secret_key(new_secret()), max_in_flight=2)
        made.append(target)
        return await sender.deliver(target, "e1", Envelope({"subscriptionId": "s"}).body("{}"))

    yield deliver
    for target in made:
        await target.close()


async def test_a_name_resolving_to_a_refused_address_is_never_connected(send: Any) -> None:
    async with serving(await http(200)) as server:
        for answers in (["127.0.0.1"], ["93.184.216.34", "127.0.0.1"], ["::ffff:127.0.0.1"]):
            resolver = StubResolver({"hooks.example.com": answers})
            attempt = await send(
                f"http://hooks.example.com:{server.port}/in", TargetPolicy(), resolver
            )
            assert attempt.result == "failure" and attempt.error == CONNECTION_FAILED, attempt
            assert resolver.asked == ["hooks.example.com"]
        # A literal refused address, however written: no lookup, no connection.
        for host in ("127.0.0.1", "127.0.0.1.", "127.1", "2130706433"):
            resolver = StubResolver({})
            attempt = await send(f"http://{host}:{server.port}/in", TargetPolicy(), resolver)
            assert attempt.error == CONNECTION_FAILED and resolver.asked == [], host
        assert server.connections == 0, "refused before connecting"


async def test_the_connection_goes_to_the_checked_address(send: Any) -> None:
    reply = await http(204)
    async with serving(reply) as server:
        # The name resolves once; the connection goes to that answer (a rebinding resolver's
        # second answer is never asked for), and the request still names the host.
        resolver = StubResolver({"hooks.example.com": ["127.0.0.1"]})
        allowed = TargetPolicy.build("127.0.0.0/8")
        attempt = await send(f"http://hooks.example.com:{server.port}/in", allowed, resolver)
        assert attempt.result == "success", attempt
        assert resolver.asked == ["hooks.example.com"]
        assert server.connections == 1
        (head,) = reply.heads  # type: ignore[attr-defined]
        assert f"host: hooks.example.com:{server.port}".encode() in head.lower()


async def test_last_error_is_no_port_scanner(send: Any) -> None:
    allowed = TargetPolicy.build("127.0.0.0/8")

    async def garbage(reader: asyncio.StreamReader) -> bytes:
        return b"SSH-2.0-OpenSSH_9.6\r\n"

    async def silent(reader: asyncio.StreamReader) -> None:
        await asyncio.sleep(2)

    async def hang_up(reader: asyncio.StreamReader) -> None:
        return None

    async with serving(garbage) as ssh, serving(silent) as slow, serving(hang_up) as rude:
        async with serving(await http(200)) as closed:
            pass  # its port is now closed
        errors = {
            "closed": await send(f"http://127.0.0.1:{closed.port}/", allowed),
            "not http": await send(f"http://127.0.0.1:{ssh.port}/", allowed),
            "silent": await send(f"http://127.0.0.1:{slow.port}/", allowed, timeout=0.3),
            "hang up": await send(f"http://127.0.0.1:{rude.port}/", allowed),
            "tls to plain": await send(f"https://127.0.0.1:{ssh.port}/", allowed),
            "refused": await send(f"http://127.0.0.1:{rude.port}/", TargetPolicy()),
            "no such name": await send(
                "http://nowhere.example.com/", allowed, StubResolver({"nowhere.example.com": []})
            ),
        }
        assert {name: a.error for name, a in errors.items()} == dict.fromkeys(
            errors, CONNECTION_FAILED
        )
        assert errors["silent"].result == "timeout", "metrics still tell timeouts apart"
    async with serving(await http(503)) as busy:
        attempt = await send(f"http://127.0.0.1:{busy.port}/", allowed)
        assert attempt.error == "HTTP 503", "an HTTP answer is reported"


async def test_a_config_stored_before_the_checks_fails_the_attempt_not_the_worker() -> None:
    # Records written before today's checks (a header value that is not ASCII, credentials
    # in the URL beside an authorization header, a host IDNA cannot encode, a port out of
    # range): the attempt fails, nothing is sent, and the failure is recorded like any other
    # (before, a header that is not ASCII made the worker itself die).
    async with serving(await http(200)) as server:
        sender = Sender(timeout=5, max_connections=1, targets=TargetPolicy.build("127.0.0.0/8"))
        here = f"127.0.0.1:{server.port}"
        built = WebhookConfig.build(event_filter="*", url=f"http://{here}/")
        for url, headers in (
            (f"http://{here}/", (("X-Name", "caf\u00e9"),)),
            (f"http://u:p@{here}/", (("Authorization", "Bearer t"),)),
            (f"http://ex\u00e4mple..com:{server.port}/", ()),
            ("http://127.0.0.1:65536/", ()),
        ):
            old = dataclasses.replace(built, url=url, headers=headers)
            target = Target(sender, old, secret_key(new_secret()), max_in_flight=1)
            try:
                attempt = await sender.deliver(target, "e1", Envelope({}).body("{}"))
            finally:
                await target.close()
            assert attempt.result == "failure" and attempt.error == INVALID_REQUEST, url
        assert server.connections == 0


async def deliver_once(sender: Sender, config: WebhookConfig) -> None:
    """One delivery of ``config`` through ``sender``, which must succeed."""
    target = Target(sender, config, secret_key(new_secret()), max_in_flight=1)
    try:
        attempt = await sender.deliver(target, "e1", Envelope({}).body("{}"))
    finally:
        await target.close()
    assert attempt.result == "success", attempt


async def test_one_user_agent_the_configured_one_if_any() -> None:
    # Two user-agent fields make strict receivers (aiohttp) answer 400: a configured
    # User-Agent, in any case, replaces deltagate's.
    reply = await http(204)
    async with serving(reply) as server:
        sender = Sender(timeout=5, max_connections=1, targets=TargetPolicy.build("127.0.0.0/8"))
        url = f"http://127.0.0.1:{server.port}/in"
        for headers, expected in (
            (None, USER_AGENT),
            ({"User-Agent": "x/1"}, "x/1"),
            ({"user-agent": "my-projection/2.0", "X-A": "a"}, "my-projection/2.0"),
            ({"USER-AGENT": "x/1"}, "x/1"),
        ):
            await deliver_once(
                sender, WebhookConfig.build(event_filter="*", url=url, headers=headers)
            )
            head = reply.heads.pop().decode()  # type: ignore[attr-defined]
            agents = [
                value.strip()
                for name, _, value in (line.partition(":") for line in head.split("\r\n"))
                if name.lower() == "user-agent"
            ]
            assert agents == [expected], head


async def test_credentials_in_the_url_are_sent_as_basic_auth() -> None:
    reply = await http(204)
    async with serving(reply) as server:
        sender = Sender(timeout=5, max_connections=1, targets=TargetPolicy.build("127.0.0.0/8"))
        url = f"http://hook-user:p%40ss@127.0.0.1:{server.port}/in"
        await deliver_once(sender, WebhookConfig.build(event_filter="*", url=url))
        (head,) = reply.heads  # type: ignore[attr-defined]
        basic = base64.b64encode(b"hook-user:p@ss").decode()
        found = [
            line
            for line in head.decode().split("\r\n")
            if line.lower().startswith("authorization:")
        ]
        assert found == [f"authorization: Basic {basic}"], head
