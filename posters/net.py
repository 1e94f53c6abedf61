"""Keep poster fetching out of the worker's own network (SSRF), even through DNS.

Every TCP connection the fetcher opens goes through `CheckedBackend`: it resolves the
host once, refuses the connection if any resolved address is private, loopback,
link-local, multicast, reserved or otherwise not globally routable, and then connects
to the very address it checked (so a DNS answer cannot change between the check and
the connect). TLS still verifies the certificate against the host name and sends it as
SNI, and the Host header is the URL's, because only the TCP connect is redirected.

Addresses written literally in TMDB_BASE_URL or POSTER_HOSTS are trusted: that is how
tests and on-premises mirrors name a loopback or private server on purpose.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

from posters.errors import HostNotAllowed
from posters.streams import AsyncioBackend, linear_pool_scan
from posters.urls import split_host_port

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Not globally routable yet not flagged by every `ipaddress` property on every Python.
_EXTRA_BLOCKED = [
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "192.0.0.0/24",
        "198.18.0.0/15",  # benchmarking
        "fc00::/7",
        "fe80::/10",
        "64:ff9b:1::/48",
    )
]


def literal_address(host: str) -> IPAddress | None:
    """The IP address `host` spells, if it is one (brackets allowed for IPv6)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why fetching from `address` is refused, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            reason = blocked_reason(mapped)
            return f"{reason} (inside IPv6 {address})" if reason else None
    for flag in ("loopback", "link_local", "multicast", "private", "reserved", "unspecified"):
        if getattr(address, f"is_{flag}"):
            return f"{flag.replace('_', '-')} address {address}"
    if any(address in net for net in _EXTRA_BLOCKED if net.version == address.version):
        return f"non-public address {address}"
    if not address.is_global:
        return f"non-global address {address}"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Addresses of `host` from the operating system's resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressGuard:
    """Resolve a host once and return only addresses the fetcher may connect to."""

    def __init__(self, trusted: Iterable[str] = (), resolver: Resolver | None = None):
        addresses = (literal_address(host) for host in trusted)
        self.trusted: frozenset[IPAddress] = frozenset(a for a in addresses if a is not None)
        self.trusted_names: frozenset[str] = frozenset()  # proxies named by the operator
        self._resolver = resolver or system_resolver

    @classmethod
    def from_urls_and_hosts(
        cls, urls: Iterable[str], hosts: Iterable[str], resolver: Resolver | None = None
    ) -> AddressGuard:
        """Trust the literal addresses among the configured site URLs and `host[:port]` entries."""
        names = [httpx.URL(url).host for url in urls]
        names += [split_host_port(entry)[0] for entry in hosts]
        return cls(names, resolver)

    def trust_proxies(self, urls: Iterable[str]) -> None:
        """Let connections to these proxies through, wherever their names resolve to."""
        hosts = [httpx.URL(url).host.lower() for url in urls]
        self.trusted |= {a for a in map(literal_address, hosts) if a is not None}
        self.trusted_names |= {host for host in hosts if literal_address(host) is None}

    def check(self, address: IPAddress, host: str) -> None:
        """Raise `HostNotAllowed` if `address` (which `host` named) may not be fetched from."""
        if address in self.trusted:
            return
        reason = blocked_reason(address)
        if reason is not None:
            what = host if str(address) == host.strip("[]") else f"{host}, which resolves to"
            raise HostNotAllowed(f"refused to connect to {what} {reason}: not a public address")

    async def resolve(self, host: str, port: int) -> list[str]:
        """Checked addresses to connect to; refuse the host if any answer is not public."""
        literal = literal_address(host)
        if literal is not None:
            self.check(literal, host)
            return [str(literal)]
        try:
            answers = await self._resolver(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
        addresses: list[IPAddress] = []
        for answer in answers:
            address = literal_address(answer)
            if address is None:
                raise HostNotAllowed(f"the resolver answered {answer!r} for {host}, not an address")
            if host.lower() not in self.trusted_names:
                self.check(address, host)
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        return [str(address) for address in addresses]


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the guard checked."""

    def __init__(self, guard: AddressGuard, inner: httpcore.AsyncNetworkBackend):
        self.guard = guard
        self._inner = inner
        self.connects: list[tuple[str, str, int]] = []  # (host, address, port): the last 100
        self.opened = 0  # connections made in all

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve and check `host` once, then connect to the first checked address that answers."""
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.guard.resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout} s") from exc
        error: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            del self.connects[:-100]
            self.connects.append((host, address, port))
            self.opened += 1
            return stream
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refused: posters are fetched over TCP only."""
        raise httpcore.ConnectError("unix sockets are not used for posters")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def checked_transport(
    guard: AddressGuard, backend: CheckedBackend | None = None, **kwargs: typing.Any
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go through `CheckedBackend` (`backend`, or a new one).

    httpx does not take a network backend as an argument, so the connection pool's is
    replaced in place (the pool hands it to each new connection): the guard in front of
    `posters.streams.AsyncioBackend` (asyncio streams rather than httpcore's anyio ones).
    """
    transport = httpx.AsyncHTTPTransport(trust_env=False, **kwargs)
    pool = transport._pool
    if not isinstance(pool, httpcore.AsyncConnectionPool):  # pragma: no cover - proxies' are too
        raise TypeError(f"unexpected connection pool {type(pool).__name__}")
    pool._network_backend = backend or CheckedBackend(guard, AsyncioBackend())
    linear_pool_scan(pool)
    return transport
