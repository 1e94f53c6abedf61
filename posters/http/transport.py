"""The fetcher's one HTTP seam: `send(target, headers) -> Response`, in two implementations.

`DirectTransport` is the fetcher's own: GETs over a pool of kept HTTP/1.1 connections
(`posters.http.pool`), each made by `Connector` to a checked public address, each answer
framed by `AnswerParser`. It does what the fetcher needs and no more:

- GET only, no request body; HTTP/1.1, no pipelining, no upgrade;
- a connection goes back to the pool only once its answer was read to the end, framed as
  the server said, with nothing after it, and the server keeps it alive;
- a GET on a reused connection that the server had closed meanwhile (nothing of an answer
  arrived) is sent again once on another connection, as browsers do.

`HttpxTransport` sends through a stock httpx transport: a proxy's (`posters.http.proxies`),
or the one a test mounts. Which one serves is chosen when the fetcher is built. Both
raise httpx's errors (`ConnectError`, `ReadTimeout`, `RemoteProtocolError`, ...).
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import httpx

from poster_genres.posters.http.connections import Connection, Connector
from poster_genres.posters.http.framing import AnswerParser
from poster_genres.posters.http.pool import Pool
from poster_genres.posters.http.response import Response
from poster_genres.posters.http.urls import Target

READ_BYTES = 64 * 1024  # asked of the connection per read
_FORBIDDEN_IN_HEADERS = re.compile(rb"[\r\n\0]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class Timeouts:
    """Seconds each step of a request may wait; None: no limit."""

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None

    def as_httpx(self) -> dict[str, float | None]:
        return {"connect": self.connect, "read": self.read, "write": self.write, "pool": self.pool}


class Transport(Protocol):
    """Sends one GET and returns its response, the body still to read."""

    async def send(self, target: Target, headers: dict[str, str]) -> Response: ...

    async def aclose(self) -> None: ...


def header_lines(headers: dict[str, str]) -> bytes:
    """Header lines as sent (each ending in CRLF); refuse a name or a value that cannot be."""
    lines = []
    for name, value in headers.items():
        raw_name, raw_value = name.encode("latin-1"), value.encode("latin-1")
        if not _TOKEN.fullmatch(raw_name) or _FORBIDDEN_IN_HEADERS.search(raw_value):
            raise httpx.LocalProtocolError(f"header {name[:40]!r} cannot be sent")
        lines.append(raw_name + b": " + raw_value + b"\r\n")
    return b"".join(lines)


class DirectTransport:
    """GETs over kept HTTP/1.1 connections (see the module)."""

    def __init__(self, connector: Connector, timeouts: Timeouts, max_connections: int):
        self._connector = connector
        self._timeouts = timeouts
        self._pool = Pool(connector.connect, max_connections, math.inf)
        self._lines: dict[tuple[tuple[str, str], ...], bytes] = {}  # header lines, by headers

    async def send(self, target: Target, headers: dict[str, str]) -> Response:
        head = b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
            target.target,
            target.host_header,
            self._header_lines(headers),
        )
        answer, connection = await self._exchange(target.origin, head)
        body = _Body(self._pool, connection, answer, self._timeouts.read)
        return Response.from_wire(
            answer.status,
            answer.headers,
            body.__aiter__,
            body.aclose,
            answer.http_version,
            answer.reason,
            body.received,
        )

    async def aclose(self) -> None:
        self._pool.close()

    def _header_lines(self, headers: dict[str, str]) -> bytes:
        key = tuple(headers.items())
        lines = self._lines.get(key)
        if lines is None:
            if len(self._lines) > 64:  # a fetcher sends a handful of header sets
                self._lines.clear()
            lines = self._lines[key] = header_lines(headers)
        return lines

    async def _exchange(
        self, origin: tuple[str, str, int], head: bytes
    ) -> tuple[AnswerParser, Connection]:
        """Send `head` to `origin`: the answer's head parsed, and the connection it came on."""
        timeouts = self._timeouts
        for _ in range(3):  # a reused connection the server had closed: once more, and once
            connection = await self._pool.acquire(origin, timeouts.connect, timeouts.pool)
            reused = connection.requests > 0
            connection.requests += 1
            answer = AnswerParser()
            try:
                await _send(connection, head, answer, timeouts)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                self._pool.release(connection, False)
                if reused and not answer.fed:
                    continue
                raise
            except BaseException:
                self._pool.release(connection, False)
                raise
            return answer, connection
        raise httpx.RemoteProtocolError("the server closed every connection tried")


async def _send(
    connection: Connection, head: bytes, answer: AnswerParser, timeouts: Timeouts
) -> None:
    """Write the request and read its answer's head (and what of the body came with it)."""
    await connection.write(head, timeouts.write)
    while not answer.head_done:
        data = await connection.read(READ_BYTES, timeouts.read)
        if not data:
            raise httpx.RemoteProtocolError("the server closed the connection without answering")
        answer.feed(data)


class _Body:
    """An answer's body as it arrives; closing it gives the connection back or drops it."""

    def __init__(
        self, pool: Pool, connection: Connection, answer: AnswerParser, timeout: float | None
    ):
        self._pool, self._connection, self._answer = pool, connection, answer
        self._timeout = timeout
        self._closed = False

    def received(self) -> bool:
        """Whether the whole body has arrived (what is left of it is in memory)."""
        return self._answer.complete

    async def __aiter__(self) -> AsyncIterator[bytes]:
        answer = self._answer
        while True:
            if answer.chunks:
                chunks, answer.chunks = answer.chunks, []
                for chunk in chunks:
                    yield chunk
            if answer.complete:
                return
            data = await self._connection.read(READ_BYTES, self._timeout)
            if data:
                answer.feed(data)
            elif answer.ends_at_close():
                answer.complete, answer.extra = True, True  # whole, but the connection is done
            else:
                raise httpx.RemoteProtocolError(
                    "the server closed the connection before the end of the body"
                )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.release(self._connection, self._answer.keeps_alive())


class HttpxTransport:
    """GETs through a stock httpx transport (a proxy's, or one a test mounts)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, timeouts: Timeouts):
        self._transport = transport
        self._timeouts = timeouts.as_httpx()

    async def send(self, target: Target, headers: dict[str, str]) -> Response:
        url = httpx.URL(
            scheme=target.scheme,
            host=target.host,
            port=target.port,
            raw_path=target.target,
        )
        request = httpx.Request("GET", url, headers=headers, extensions={"timeout": self._timeouts})
        response = await self._transport.handle_async_request(request)
        response.request = request
        return Response.from_httpx(response)

    async def aclose(self) -> None:
        await self._transport.aclose()
