"""httpcore's connections on asyncio streams, and its pool's bookkeeping in linear time.

httpcore's default backend goes through anyio: a cancel scope around every read and
write, and a dictionary of attribute getters built each time the pool asks whether an
idle connection was closed (which it does for every connection on every request). On
TMDB-shaped pages that was about a fifth of the fetching CPU. This backend does the same
on asyncio's own streams: reads and writes time out as httpcore asks (`asyncio.timeout`
only when they have to wait), TLS is `StreamWriter.start_tls`, and the socket is kept
for the idle check. `posters.net.CheckedBackend` still decides which address is dialled.

`linear_pool_scan` fixes a quadratic scan in httpcore 1.0's pool: on every request and
every release it counted all connections once per idle connection (~400 calls a request
with 32 connections open), another tenth of the fetching CPU; and it asked every connection
whether it had expired, which here is asked of the connection a request is about to get.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import types
import typing

import httpcore

READ_LIMIT = 64 * 1024  # bytes the stream buffers ahead of httpcore's reads
SWEEP_INTERVAL_S = 1.0  # how often the pool asks every connection whether it has expired


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection: an asyncio `StreamReader`/`StreamWriter` pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self._socket: socket.socket | None = writer.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            reader = self._reader
            # what has arrived (or the end) is read at once: no timer to set
            if timeout is None or reader._buffer or reader.at_eof():  # type: ignore[attr-defined]
                return await reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            if self._writer.is_closing():
                raise ConnectionResetError("the connection is closed")
            self._writer.write(buffer)
            # all of it went out at once (a request's head, mostly): nothing to wait for
            if timeout is None or not self._writer.transport.get_write_buffer_size():
                await self._writer.drain()
                return
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, ssl.SSLError):  # closing a broken connection
            pass

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(str(exc) or "TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; said for clarity
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":  # httpcore: an idle connection the server has closed
            # asyncio's transport reads whenever the loop polls, so a close or stray bytes
            # are already in the reader: no system call per idle connection per request
            reader = self._reader
            return reader.at_eof() or self._writer.is_closing() or bool(reader._buffer)  # type: ignore[attr-defined]
        if info == "socket":
            return self._socket
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connects with asyncio; given literal addresses by `CheckedBackend`."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
            if local_address is not None:
                sock.bind((local_address, 0))
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (host, port))
            reader = asyncio.StreamReader(limit=READ_LIMIT, loop=loop)
            protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=sock)
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            sock.close()
            raise
        return AsyncioStream(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def linear_pool_scan(pool: httpcore.AsyncConnectionPool) -> None:
    """Give `pool` (httpcore 1.0's, or its proxy subclass) a linear request assignment.

    Only on httpcore 1.0.x, whose pool this follows; on another release the pool is left as
    it is.

    The same decisions as httpcore 1.0.9's: its surplus-idle test counts every connection
    (`len([c.is_idle() for c in connections])`), which is `len(connections)`, computed once
    per idle connection; here it is read directly.
    """
    if not httpcore.__version__.startswith("1.0."):  # pragma: no cover - another pool: its own
        return
    if not callable(getattr(pool, "_assign_requests_to_connections", None)):  # pragma: no cover
        raise TypeError(f"unexpected connection pool {type(pool).__name__}")
    pool._assign_requests_to_connections = types.MethodType(_assign_requests, pool)  # type: ignore[method-assign]


def _assign_requests(self: typing.Any) -> list[typing.Any]:
    """httpcore 1.0.9's `AsyncConnectionPool._assign_requests_to_connections`, in linear time.

    httpcore asks every connection whether it has expired on every pool event (each
    request, each release). Here a connection is asked when a request is about to be
    given to it, and all of them at most every `SWEEP_INTERVAL_S`: an expired connection
    is never reused, and an idle one past its keep-alive is still closed within about a
    second of the next pool event.
    """
    closing: list[typing.Any] = []
    connections = self._connections
    now = time.monotonic()
    if now >= getattr(self, "_next_sweep", 0.0):
        self._next_sweep = now + SWEEP_INTERVAL_S
        _sweep(self, connections, closing)
    elif any(connection.is_closed() for connection in connections):
        connections[:] = [c for c in connections if not c.is_closed()]
    for pool_request in [request for request in self._requests if request.is_queued()]:
        origin = pool_request.request.url.origin
        available = _available(connections, origin, closing)
        if available is not None:
            pool_request.assign_to_connection(available)
            continue
        if len(connections) >= self._max_connections:
            idle = next((c for c in connections if c.is_idle()), None)
            if idle is None:
                continue  # the request waits for a connection
            connections.remove(idle)
            closing.append(idle)
        connection = self.create_connection(origin)
        connections.append(connection)
        pool_request.assign_to_connection(connection)
    return closing


def _sweep(pool: typing.Any, connections: list[typing.Any], closing: list[typing.Any]) -> None:
    """Drop closed connections; close expired ones and idle ones beyond the keep-alive limit."""
    for connection in list(connections):
        if connection.is_closed():
            connections.remove(connection)
        elif connection.has_expired() or (
            connection.is_idle() and len(connections) > pool._max_keepalive_connections
        ):
            connections.remove(connection)
            closing.append(connection)


def _available(
    connections: list[typing.Any], origin: typing.Any, closing: list[typing.Any]
) -> typing.Any:
    """A connection that can take a request to `origin` now; expired ones met are closed."""
    for connection in list(connections):
        if connection.can_handle_request(origin) and connection.is_available():
            if not connection.has_expired():
                return connection
            connections.remove(connection)
            closing.append(connection)
    return None
