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
``localhost``: ``check_url_host``), and at every connection: the dispatcher's HTTP client
(``client.Origin``) connects only to the addresses ``GuardedResolver`` hands it, which resolves
the name once, checks every address it resolves to and returns only checked ones, never a
second lookup's answer, so DNS rebinding cannot switch it (TLS still verifies the certificate
against the host name); a literal address is checked the same way, and also once per
subscription config by ``literal_refusal`` in the delivery path (nothing is sent, nothing is
resolved). The webhook client never goes through a proxy from the environment: the check must
see the address actually connected to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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
IETF_PROTOCOL = ipaddress.ip_network("192.0.0.0/24")
"""IANA's IETF protocol assignments: not globally reachable, but for 192.0.0.9 and 192.0.0.10
(``IETF_REACHABLE``). Python 3.11's ``is_global`` takes the rest for global (3.12.4 does not)."""
IETF_REACHABLE = frozenset(map(ipaddress.ip_address, ("192.0.0.9", "192.0.0.10")))
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
    if isinstance(ip, ipaddress.IPv4Address) and ip in IETF_PROTOCOL and ip not in IETF_REACHABLE:
        return "an address that is not globally routable"
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


class TargetRefused(OSError):
    """A connection the policy refused (no connection was attempted)."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``getaddrinfo`` gives for ``host``, in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def literal_refusal(host: str, policy: TargetPolicy) -> str | None:
    """Why a URL's host, when it is a literal address in any spelling (``127.0.0.1.``,
    ``127.1``, ``[::ffff:127.0.0.1]``), may not be connected to (None: it may, or it is a name).
    The delivery path judges it once per subscription config (``delivery.Target``), so a refused
    one is never sent."""
    literal = literal_address(host.rstrip("."))
    if literal is None:
        return None
    why = policy.refusal(literal)
    return None if why is None else f"{host} is {literal}, {why}"


class GuardedResolver:
    """The policy in front of name resolution, for every connection of the dispatcher's client:
    the name is resolved once, every answer is checked, and one refused answer refuses the name
    (a rebinding name mixes both kinds). The client connects only to the addresses returned
    here, never to a second lookup's answer; TLS still verifies the certificate against the
    host name.

    ``resolver`` (host, port) -> addresses replaces the lookup (tests: a stub); by default it is
    ``system_resolver``."""

    def __init__(self, policy: TargetPolicy, resolver: Resolver | None = None) -> None:
        self._policy = policy
        self._resolve = resolver or system_resolver

    async def __call__(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to for ``host``, in order; TargetRefused (an
        OSError) when the policy refuses one, OSError when there is none."""
        literal = literal_address(host.rstrip("."))
        found = [str(literal)] if literal is not None else await self._resolve(host, port)
        if not found:
            raise OSError(f"{host} resolves to no address")
        for address in found:
            why = self._policy.refusal(ipaddress.ip_address(address))
            if why is not None:
                raise TargetRefused(f"{host} resolves to {address}, {why}")
        return found
