"""Connections to public addresses only (SSRF, even through DNS), read as bytes arrive.

Every TCP connection the fetcher opens goes through `Connector`: it resolves the
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
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import httpx

from poster_genres.posters.errors import HostNotAllowed
from poster_genres.posters.http.urls import parse_target, split_host_port

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
READ_LIMIT = 64 * 1024  # bytes buffered ahead of the reader before the socket is paused

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
        self._resolver = resolver or system_resolver

    @classmethod
    def from_urls_and_hosts(
        cls, urls: Iterable[str], hosts: Iterable[str], resolver: Resolver | None = None
    ) -> AddressGuard:
        """Trust the literal addresses among the configured site URLs and `host[:port]` entries."""
        names = [parse_target(url).host for url in urls]
        names += [split_host_port(entry)[0] for entry in hosts]
        return cls(names, resolver)

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
            raise httpx.ConnectError(f"could not resolve {host}: {exc}") from exc
        addresses: list[IPAddress] = []
        for answer in answers:
            address = literal_address(answer)
            if address is None:
                raise HostNotAllowed(f"the resolver answered {answer!r} for {host}, not an address")
            self.check(address, host)
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpx.ConnectError(f"{host} has no address")
        return [str(address) for address in addresses]


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: what arrives is buffered, up to `READ_LIMIT`, until read.

    Reads and writes wait at most their timeout; errors are httpx's (`ReadTimeout`,
    `ReadError`, `WriteTimeout`, `WriteError`). Closing aborts at once: a pooled
    connection carries no half-done work worth a goodbye, and a TLS close would wait for a
    silent peer's close notice.
    """

    def __init__(self, origin: tuple[str, str, int]):
        self.origin = origin
        self.idle_since = time.monotonic()
        self.requests = 0  # requests sent on it
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._lost: Exception | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not `isinstance(transport, asyncio.Transport)`: uvloop's transports are not subclasses
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._reading and len(self._buffer) > READ_LIMIT:
            self._reading = False
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    @property
    def transport(self) -> asyncio.Transport:
        if self._transport is None:
            raise httpx.ReadError("the connection is not open")
        return self._transport

    def usable(self, now: float, expiry: float) -> bool:
        """Idle within its keep-alive, not closed by the server, nothing unasked-for received."""
        fresh = now - self.idle_since < expiry
        return fresh and not self._eof and not self._buffer and not self.transport.is_closing()

    async def read(self, max_bytes: int, timeout: float | None) -> bytes:
        """What has arrived (at most `max_bytes`), waiting up to `timeout` for something; b"" at
        the end."""
        if not self._buffer and not self._eof:
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup
            except TimeoutError:
                raise httpx.ReadTimeout("no data within the read timeout") from None
            finally:
                self._wakeup = None
        if not self._buffer and self._lost is not None:
            raise httpx.ReadError(str(self._lost) or type(self._lost).__name__)
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if not self._reading and len(self._buffer) <= READ_LIMIT:
            self._reading = True
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes, timeout: float | None) -> None:
        """Send `data`, waiting up to `timeout` while the socket's buffer is full."""
        if self._eof or self.transport.is_closing():
            raise httpx.WriteError("the connection is closed")
        self.transport.write(data)
        if self._writable is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._writable
            except TimeoutError:
                raise httpx.WriteTimeout("could not send within the write timeout") from None

    async def start_tls(self, context: ssl.SSLContext, host: str, timeout: float | None) -> None:
        """Upgrade to TLS, the certificate checked against `host` (also sent as SNI)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(self.transport, self, context, server_hostname=host)
        except TimeoutError:
            self.close()
            raise httpx.ConnectTimeout(f"the TLS handshake with {host} timed out") from None
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:  # cancelled: the socket is not left open
            self.close()
            raise
        if tls is None:  # pragma: no cover - asyncio gives one for a TLS upgrade
            raise httpx.ConnectError(f"no TLS transport for {host}")
        self._transport = tls

    def close(self) -> None:
        """Close now, without waiting for the peer."""
        if self._transport is not None:
            self._transport.abort()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


Dial = Callable[[tuple[str, str, int], str, "float | None"], Awaitable["Connection"]]


class Connector:
    """Opens `Connection`s to the addresses `AddressGuard` allows, TLS verified by `ssl_context`.

    `dial(origin, address, timeout)` makes the TCP connection to a checked address.
    """

    def __init__(self, guard: AddressGuard, ssl_context: ssl.SSLContext, dial: Dial | None = None):
        self.guard = guard
        self.ssl_context = ssl_context
        self.dial: Dial = dial or open_connection
        self.opened = 0  # connections made in all
        self.connects: list[tuple[str, str, int]] = []  # (host, address, port): the last 100

    async def connect(self, origin: tuple[str, str, int], timeout: float | None) -> Connection:
        """A connection to `origin` (scheme, host, port): the first checked address that answers."""
        scheme, host, port = origin
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.guard.resolve(host, port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"resolving {host} took over {timeout} s") from None
        error: Exception = httpx.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                connection = await self.dial(origin, address, timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error = exc
                continue
            self.opened += 1
            del self.connects[:-99]
            self.connects.append((host, address, port))
            if scheme == "https":
                await connection.start_tls(self.ssl_context, host, timeout)
            return connection
        raise error


async def open_connection(
    origin: tuple[str, str, int], address: str, timeout: float | None
) -> Connection:
    """A TCP connection to `address` (already checked), without Nagle's delay."""
    loop = asyncio.get_running_loop()
    connection = Connection(origin)
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: connection, address, origin[2])
    except TimeoutError:
        raise httpx.ConnectTimeout(f"connecting to {address}:{origin[2]} timed out") from None
    except OSError as exc:
        raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
    sock: Any = connection.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection
