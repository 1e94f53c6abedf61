"""The fetcher's own HTTP/1.1 transport under httpx: GETs over a pool of kept connections.

httpx's default transport (httpcore with h11) spends about 0.7 CPU ms on each request
here (`bench/http_floor.py`), three times a poster, all of it on the fetch thread. This
one does what the fetcher needs and no more:

- GET only, no request body; HTTP/1.1, no pipelining, no upgrade;
- the response framed by httptools (llhttp, in C): Content-Length, chunked, or read to
  the close; 1xx answers skipped; a head over `MAX_HEAD_BYTES` refused; header values
  taken as h11 takes them (any byte but NUL, CR and LF), lines ending in LF alone too;
- connections made by `posters.net.CheckedBackend` (the SSRF guard after DNS) on
  `posters.streams.AsyncioBackend`, TLS by asyncio with httpx's default verification;
- a pool of at most `limits.max_connections`, idle ones kept per origin for
  `limits.keepalive_expiry` and reused newest first (a steady load keeps a steady set),
  a request that finds the pool full waits for a connection (the pool timeout);
- a connection goes back to the pool only once its answer was read to the end, framed
  as the server said, with nothing after it, and the server keeps it alive;
- a GET on a reused connection that the server had closed meanwhile (nothing of an
  answer arrived) is sent again once on another connection, as browsers do.

Errors are httpx's (`ConnectError`, `ReadTimeout`, `RemoteProtocolError`, `PoolTimeout`…),
so the fetcher cannot tell this transport from httpx's. Proxies still go through httpx's
own transport (`posters.client`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpcore
import httptools
import httpx

from posters import streams
from posters.answer import Answer
from posters.streams import AsyncioStream
from posters.urls import RequestTarget

READ_BYTES = 64 * 1024  # asked of the stream per read
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one answer
_FORBIDDEN_IN_HEADERS = re.compile(rb"[\r\n\0]")
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

Origin = tuple[bytes, str, int]  # scheme, host, port


# the stream's (httpcore's) errors and the httpx errors they stand for; the first match wins
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.ReadTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.ReadError),
)


@contextlib.contextmanager
def _as_httpx(request: httpx.Request | None) -> Iterator[None]:
    """Raise the stream's errors as the httpx errors they stand for."""
    try:
        yield
    except (httpcore.TimeoutException, httpcore.NetworkError) as exc:
        kind = next(theirs for ours, theirs in _HTTPX_ERRORS if isinstance(exc, ours))
        raise kind(str(exc), request=request) from exc


def request_head(request: httpx.Request) -> bytes:
    """The request line and headers of a GET without a body; refuse what would not be one."""
    if request.method != "GET":
        what = f"{request.method} is not sent here: GET only"
        raise httpx.LocalProtocolError(what, request=request)
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        raise httpx.LocalProtocolError("a GET is sent without a body", request=request)
    return _head(request.url.raw_path, header_fields(request.headers.raw, request), request)


def header_fields(raw: list[tuple[bytes, bytes]], request: httpx.Request | None = None) -> bytes:
    """Header lines as sent (each ending in CRLF); refuse a name or a value that cannot be."""
    lines = []
    for name, value in raw:
        if not _TOKEN.match(name) or _FORBIDDEN_IN_HEADERS.search(value):
            raise httpx.LocalProtocolError(f"header {name!r} cannot be sent", request=request)
        lines.append(name + b": " + value + b"\r\n")
    return b"".join(lines)


def direct_head(target: RequestTarget, fields: bytes) -> bytes:
    """The head of a GET of `target`: its Host header first, as httpx writes it, then `fields`."""
    return _head(target.target, b"Host: " + target.host_header + b"\r\n" + fields, None)


def _head(target: bytes, fields: bytes, request: httpx.Request | None) -> bytes:
    if _FORBIDDEN_IN_HEADERS.search(target) or b" " in target:
        raise httpx.LocalProtocolError("the request target cannot be sent", request=request)
    return b"GET " + target + b" HTTP/1.1\r\n" + fields + b"\r\n"


class _Answer:
    """httptools' callbacks for one request's answer (1xx answers before it skipped)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        # as tolerant as h11 was: any header value byte but NUL, CR and LF (llhttp still
        # refuses a CR that does not end a line), and lines that end in LF alone
        self.parser.set_dangerous_leniencies(
            lenient_headers=True, lenient_optional_cr_before_lf=True
        )
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.chunks: list[bytes] = []
        self.status = 0
        self.head_done = False  # the final (non-1xx) head is in
        self.complete = False  # its body too
        self.extra = False  # bytes came after the answer: the connection cannot be trusted
        self.fed = 0  # bytes fed before the head was done
        self.since_body = 0  # bytes fed after it since the last of the body (chunk lines, trailers)
        self.head_bytes = 0  # of the headers parsed
        self.problem = ""  # why a callback refused the answer
        self.version = "1.1"
        self.keep_alive = False  # the server keeps the connection open after this answer

    def on_message_begin(self) -> None:
        if self.complete:  # more after the answer: stop the parser there
            self.extra = True
            raise ValueError("bytes after the answer")

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:  # a trailer, after a chunked body: not one of the answer's headers
            return
        self.head_bytes += len(name) + len(value) + 4
        if b"\0" in value or name[-1:] in (b" ", b"\t"):  # llhttp, lenient, lets both by
            what = "a NUL byte in" if b"\0" in value else "whitespace before the colon of"
            self.problem = f"{what} header {name[:40]!r}"
            raise ValueError(self.problem)
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_bytes > MAX_HEAD_BYTES:
            self.problem = f"the answer's head is over {MAX_HEAD_BYTES} bytes"
            raise ValueError(self.problem)
        self.status = self.parser.get_status_code()
        if self.status < 100:
            self.problem = f"status {self.status} is not an HTTP status"
            raise ValueError(self.problem)
        self.version = self.parser.get_http_version()
        if self.status >= 200:
            self.head_done = True

    def on_body(self, body: bytes) -> None:
        if not self.head_done:  # llhttp frames a 1xx's body; it has none (RFC 9110 15.2)
            self.problem = f"a body in an informational ({self.status}) answer"
            raise ValueError(self.problem)
        self.since_body = 0
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once done
        else:  # a 1xx answer: the real one follows
            self.headers, self.reason, self.head_bytes = [], b"", 0

    def feed(self, data: bytes, request: httpx.Request | None) -> None:
        if self.head_done:
            self.since_body += len(data)
        else:
            self.fed += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise httpx.RemoteProtocolError("the server switched protocols", request=request)
        except httptools.HttpParserError as exc:
            if self.complete:  # garbage after a whole answer
                self.extra = True
                return
            detail = self.problem or str(exc)
            raise httpx.RemoteProtocolError(
                f"malformed answer: {detail}", request=request
            ) from None
        if not self.head_done and self.fed > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError(
                f"the answer's head is over {MAX_HEAD_BYTES} bytes", request=request
            )
        # httptools gathers a trailer whole (copied again at each feed): bound what is not body
        if not self.complete and self.since_body > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError(
                f"the answer's chunk lines or trailers are over {MAX_HEAD_BYTES} bytes",
                request=request,
            )

    @property
    def http_version(self) -> str:
        """The answer's protocol as a status line names it: HTTP/1.0, else HTTP/1.1."""
        return "HTTP/1.0" if self.version == "1.0" else "HTTP/1.1"

    def ends_at_close(self) -> bool:
        """Whether the body is framed by the connection's close (no length, not chunked)."""
        if self.status in (204, 304):
            return False
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def keeps_alive(self) -> bool:
        return self.complete and self.keep_alive and not self.extra


class _Connection:
    """One kept connection: its stream, its origin, when it went idle, requests it carried."""

    __slots__ = ("idle_since", "origin", "requests", "stream")

    def __init__(self, stream: AsyncioStream, origin: Origin):
        self.stream = stream
        self.origin = origin
        self.idle_since = time.monotonic()
        self.requests = 0

    def usable(self, now: float, expiry: float) -> bool:
        """Idle within its keep-alive, not closed by the server, nothing unasked-for read."""
        return now - self.idle_since < expiry and not self.stream.get_extra_info("is_readable")

    def close(self) -> None:
        self.stream._writer.close()


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; closing it gives the connection back or drops it."""

    def __init__(
        self,
        pool: _Pool,
        connection: _Connection,
        answer: _Answer,
        request: httpx.Request | None,
        timeout: float | None,
    ):
        self._pool, self._connection, self._answer = pool, connection, answer
        self._request, self._timeout = request, timeout
        self._closed = False

    @property
    def stream(self) -> AsyncioStream:
        return self._connection.stream

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
            with _as_httpx(self._request):
                data = await self._connection.stream.read(READ_BYTES, self._timeout)
            if data:
                answer.feed(data, self._request)
            elif answer.ends_at_close():
                answer.complete, answer.extra = True, True  # whole, but the connection is done
            else:
                raise httpx.RemoteProtocolError(
                    "the server closed the connection before the end of the body",
                    request=self._request,
                )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.release(self._connection, self._answer.keeps_alive())


Connect = Callable[[Origin, "httpx.Request | None", "float | None"], Awaitable[_Connection]]


class _Pool:
    """At most `limits.max_connections` connections; idle ones kept per origin, newest first."""

    def __init__(self, limits: httpx.Limits, connect: Connect):
        self._connect = connect
        self._max = limits.max_connections or 1_000_000
        keep = limits.max_keepalive_connections  # None: no limit of its own; 0: keep none
        self._max_idle = self._max if keep is None else min(keep, self._max)
        expiry = limits.keepalive_expiry  # None: idle connections never expire
        self._expiry = math.inf if expiry is None else expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._open = 0  # connections open or being opened, idle ones included
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._next_sweep = 0.0
        self._closed = False

    async def acquire(
        self, origin: Origin, request: httpx.Request | None, timeouts: dict[str, float | None]
    ) -> _Connection:
        """An idle connection to `origin`, else a new one, else wait for one to be released.

        The pool timeout bounds the whole wait, however many times the request is woken.
        """
        pool_timeout = timeouts.get("pool")
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        while True:
            if self._closed:
                raise RuntimeError("the transport is closed")
            connection = self._idle_to(origin)
            if connection is not None:
                return connection
            if self._open >= self._max and self._idle_count:
                self._drop_oldest_idle()
            if self._open < self._max:
                self._open += 1
                try:
                    return await self._connect(origin, request, timeouts.get("connect"))
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await self._wait(request, left)

    def release(self, connection: _Connection, keep: bool) -> None:
        """A request is done with `connection`: keep it idle, or close it."""
        if keep and not self._closed and self._idle_count < self._max_idle:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.origin, []).append(connection)
            self._idle_count += 1
        else:
            self._close(connection)
        self._wake()

    def close(self) -> list[_Connection]:
        """Close the idle connections (returned); the others close when they are released."""
        self._closed = True
        closed = [connection for idle in self._idle.values() for connection in idle]
        for connection in closed:
            self._close(connection)
        self._idle.clear()
        self._idle_count = 0
        while self._waiting:
            self._wake()
        return closed

    def _idle_to(self, origin: Origin) -> _Connection | None:
        """The newest usable idle connection to `origin`; unusable ones met are closed."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + streams.SWEEP_INTERVAL_S
            self._sweep(now)
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if not idle:  # no empty lists: `_drop_oldest_idle` looks at each one's first
                del self._idle[origin]
            if connection.usable(now, self._expiry):
                return connection
            self._close(connection)
        return None

    def _sweep(self, now: float) -> None:
        """Close idle connections past their keep-alive or closed by the server."""
        for origin, idle in list(self._idle.items()):
            keep = [c for c in idle if c.usable(now, self._expiry)]
            for connection in idle:
                if connection not in keep:
                    self._idle_count -= 1
                    self._close(connection)
            if keep:
                self._idle[origin] = keep
            else:
                del self._idle[origin]

    def _drop_oldest_idle(self) -> None:
        """Close the idle connection that has waited longest, to make room for another origin."""
        origin, idle = min(self._idle.items(), key=lambda item: item[1][0].idle_since)
        connection = idle.pop(0)
        if not idle:
            del self._idle[origin]
        self._idle_count -= 1
        self._close(connection)

    async def _wait(self, request: httpx.Request | None, timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, but leaving: the next one gets the turn
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("no connection was free in time", request=request) from None
            raise

    def _wake(self) -> None:
        """Let the longest-waiting request look for a connection again."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close(self, connection: _Connection) -> None:
        self._open -= 1
        connection.close()


class PosterTransport(httpx.AsyncBaseTransport):
    """GETs over kept HTTP/1.1 connections that `network_backend` makes (see the module)."""

    def __init__(
        self,
        network_backend: httpcore.AsyncNetworkBackend,
        limits: httpx.Limits,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.network_backend = network_backend
        self._ssl = ssl_context
        self._pool = _Pool(limits, self._connect)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        answer, body = await self._exchange(
            _origin(request), request_head(request), timeouts, request
        )
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=body,
            extensions={
                "http_version": answer.http_version.encode("ascii"),
                "reason_phrase": answer.reason,
                "network_stream": body.stream,
            },
        )

    async def get(
        self, target: RequestTarget, head: bytes, timeouts: dict[str, float | None]
    ) -> Answer:
        """GET `target` with the request `head` (`direct_head`), without httpx's models."""
        origin = (target.scheme, target.host, target.port)
        answer, body = await self._exchange(origin, head, timeouts, None)
        return Answer.of_raw(
            answer.status,
            answer.headers,
            body.__aiter__,
            body.aclose,
            answer.http_version,
            answer.reason,
            body.received,
        )

    async def _exchange(
        self,
        origin: Origin,
        head: bytes,
        timeouts: dict[str, float | None],
        request: httpx.Request | None,
    ) -> tuple[_Answer, _Body]:
        """Send `head` to `origin`; the answer's head, and its body to read."""
        for _ in range(3):  # a reused connection the server had closed: once more, and once
            connection = await self._pool.acquire(origin, request, timeouts)
            reused = connection.requests > 0
            connection.requests += 1
            answer = _Answer()
            try:
                await _send(connection, head, answer, request, timeouts)
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                self._pool.release(connection, False)
                if reused and not answer.fed:
                    continue
                raise
            except BaseException:
                self._pool.release(connection, False)
                raise
            return answer, _Body(self._pool, connection, answer, request, timeouts.get("read"))
        raise httpx.RemoteProtocolError("the server closed every connection tried", request=request)

    async def _connect(
        self, origin: Origin, request: httpx.Request | None, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        with _as_httpx(request):
            stream = await self.network_backend.connect_tcp(host, port, timeout)
            if scheme == b"https":
                if self._ssl is None:
                    self._ssl = httpx.create_ssl_context()
                stream = await stream.start_tls(self._ssl, server_hostname=host, timeout=timeout)
        if not isinstance(stream, AsyncioStream):  # pragma: no cover - the backends give these
            await stream.aclose()
            raise TypeError(f"unexpected network stream {type(stream).__name__}")
        return _Connection(stream, origin)

    async def aclose(self) -> None:
        for connection in self._pool.close():
            await connection.stream.aclose()  # waits for the close (TLS: its alert) to go out


async def _send(
    connection: _Connection,
    head: bytes,
    answer: _Answer,
    request: httpx.Request | None,
    timeouts: dict[str, float | None],
) -> None:
    """Write the request and read its answer's head (and what of the body came with it)."""
    stream = connection.stream
    with _as_httpx(request):
        await stream.write(head, timeouts.get("write"))
        while not answer.head_done:
            data = await stream.read(READ_BYTES, timeouts.get("read"))
            if not data:
                raise httpx.RemoteProtocolError(
                    "the server closed the connection without answering", request=request
                )
            answer.feed(data, request)


def _origin(request: httpx.Request) -> Origin:
    scheme = request.url.raw_scheme
    if scheme not in (b"http", b"https"):
        raise httpx.UnsupportedProtocol(f"cannot fetch a {scheme!r} URL", request=request)
    port = request.url.port or (443 if scheme == b"https" else 80)
    return scheme, request.url.raw_host.decode("ascii"), port
