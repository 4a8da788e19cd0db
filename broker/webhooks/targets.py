"""Where webhooks may be sent: the guard against server-side request forgery.

A subscription names a URL, and the dispatcher POSTs to it from inside the deployment's network.
So a URL may only reach **globally routable** addresses: loopback, private (RFC 1918), shared
(CGNAT 100.64/10), unique-local (fc00::/7), link-local (169.254/16, fe80::/10, with the cloud
metadata addresses 169.254.169.254 and fd00:ec2::254), unspecified, multicast, reserved and
documentation addresses are refused, and IPv4 addresses written inside IPv6
(``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by the IPv4 address
they carry. Networks the operator lists in ``DELTAGATE_WEBHOOK_ALLOWED_NETWORKS`` are allowed
although private, and the embedded dev mode allows loopback.

Checked twice: when a subscription is declared (a literal address, or a name such as
``localhost``: ``check_url_host``), and at every connection (``GuardedBackend``): the host name is
resolved once, every address it resolves to is checked, and the connection goes to a checked
address, never to a second lookup's answer, so DNS rebinding cannot switch it. TLS still verifies
the certificate against the host name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the addresses to connect to, in order."""

LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
CGNAT = ipaddress.ip_network("100.64.0.0/10")
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, fd00::/8"`` -> networks; ValueError naming a bad entry."""
    out: list[Network] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(
                f"'{part}' is not a network in CIDR notation (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(out)


def _kind(ip: IPAddress) -> str | None:
    """Why an address is not globally routable, or None if it is."""
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "a shared (CGNAT) address"
    if str(ip) == "fd00:ec2::254":
        return "a cloud metadata address"
    if ip.is_reserved or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "an address that is not globally routable"
    return None


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which addresses webhooks may reach: the global ones, and ``allowed`` besides."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def build(cls, networks: str = "", *, loopback: bool = False) -> TargetPolicy:
        """From ``DELTAGATE_WEBHOOK_ALLOWED_NETWORKS``; ``loopback`` adds 127.0.0.0/8 and ::1
        (the embedded dev mode). ValueError for a bad entry."""
        return cls(parse_networks(networks) + (LOOPBACK if loopback else ()))

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` may not be reached (None: it may)."""
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = (
                ip.ipv4_mapped
                or ip.sixtofour
                or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
            )
            if embedded is not None:
                return self.refusal(embedded)
            if ip.scope_id:
                ip = ipaddress.IPv6Address(str(ip).partition("%")[0])
        if any(ip in network for network in self.allowed if network.version == ip.version):
            return None
        return _kind(ip)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally, as a resolver would read it (``127.1``,
    ``0x7f.0.0.1`` and ``2130706433`` are 127.0.0.1 to ``inet_aton``); None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url_host(host: str, policy: TargetPolicy) -> str | None:
    """Why a URL's host may not be a webhook's target at declaration time (None: it may be;
    a name is checked again, by its addresses, at every connection)."""
    name = host.lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        why = policy.refusal(ipaddress.IPv4Address("127.0.0.1"))
        return None if why is None else f"names {host}, {why}"
    ip = literal_address(name)
    if ip is None:
        return None
    why = policy.refusal(ip)
    return None if why is None else f"names {ip}, {why}"


class TargetRefused(httpcore.ConnectError):
    """A connection the policy refused (httpx reports it as a ConnectError)."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``getaddrinfo`` gives for ``host``, in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy in front: resolve once, check every address,
    connect to a checked one (the next on a connection failure)."""

    def __init__(
        self,
        policy: TargetPolicy,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolver or system_resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._addresses(host, port, timeout)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def _addresses(self, host: str, port: int, seconds: float | None) -> Sequence[str]:
        literal = literal_address(host.rstrip("."))
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                async with asyncio.timeout(seconds):
                    found = await self._resolve(host, port)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        if not found:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        for address in found:
            why = self._policy.refusal(ipaddress.ip_address(address))
            if why is not None:
                # One refused answer refuses the name: a rebinding name mixes both kinds.
                raise TargetRefused(f"{host} resolves to {address}, {why}")
        return found

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("webhooks never connect to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
