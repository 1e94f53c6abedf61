"""Connections: reuse, closed connections, idle expiry, timeouts, TLS.

Each test runs on both transports (`posters.http.transport`): the fetcher's own
(`DirectTransport`, on `Connector` and `Pool`) and `HttpxTransport` over a stock httpx
transport (which proxied requests go through), and on both event loops the fetcher may
run on (`posters.loops`: uvloop, asyncio's). Connections are counted where the server
accepts them.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from poster_genres.posters.http import pool as pool_module
from poster_genres.posters.http.pool import Pool
from poster_genres.posters.http.transport import DirectTransport, HttpxTransport, Transport
from poster_genres.posters.loops import new_event_loop
from tests.fixtures import connector, get, ok, self_signed, timeouts

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
MakeTransport = Callable[..., Transport]


class Served:
    """A loopback server running `handler` on each connection, which it counts."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.accepted = 0
        self.closed = 0  # connections whose handler has returned

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await self.handler(reader, writer)
        finally:
            self.closed += 1

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        """Start serving; the server's `host:port`."""
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a test's coroutine on a new event loop of one of the two kinds."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")

    def run(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(request.param)) as runner:
            runner.run(coro)

    return run


@pytest.fixture(params=["direct", "httpx"])
def make_transport(request: pytest.FixtureRequest) -> MakeTransport:
    """Makes a transport of one of the two kinds."""

    def make(
        max_connections: int = 8, verify: ssl.SSLContext | None = None, read: float = 5.0
    ) -> Transport:
        if request.param == "direct":
            return DirectTransport(connector(verify), timeouts(read), max_connections)
        limits = httpx.Limits(max_connections=max_connections)
        stock = httpx.AsyncHTTPTransport(
            limits=limits, verify=verify or ssl.create_default_context(), trust_env=False
        )
        return HttpxTransport(stock, timeouts(read))

    return make


async def answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok(b"x" * 100_000))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def test_connections_are_reused_and_the_pool_stays_within_its_limit(
    make_transport: MakeTransport, run: Run
) -> None:
    async def main() -> None:
        served = Served(answer_each)
        origin = await served.start()
        transport = make_transport(max_connections=4)
        for _ in range(3):
            pages = await asyncio.gather(
                *(get(transport, f"http://{origin}/{i}") for i in range(12))
            )
            assert [len(p) for p in pages] == [100_000] * 12
        assert 1 <= served.accepted <= 4
        await transport.aclose()
        served.server.close()

    run(main())


def test_a_connection_the_server_closed_is_not_reused(
    make_transport: MakeTransport, run: Run
) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok())  # keep-alive announced, then closed while idle
        await writer.drain()
        writer.close()

    async def main() -> None:
        served = Served(once)
        origin = await served.start()
        transport = make_transport()
        for _ in range(3):
            assert await get(transport, f"http://{origin}/") == b"hello"
            await asyncio.sleep(0.05)
        assert served.accepted == 3
        await transport.aclose()
        served.server.close()

    run(main())


def test_the_pool_never_hands_out_a_connection_its_server_closed(run: Run) -> None:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def main() -> None:
        served = Served(close_at_once)
        await served.start()
        opens = connector()
        pool = Pool(opens.connect, 4, expiry=60.0)
        origin = ("http", "127.0.0.1", served.port)
        first = await pool.acquire(origin, 5.0, 5.0)
        pool.release(first, keep=True)
        await asyncio.sleep(0.05)  # the server's close has arrived
        second = await pool.acquire(origin, 5.0, 5.0)
        assert second is not first and opens.opened == 2
        pool.close()
        served.server.close()

    run(main())


def test_closing_a_connection_aborts_it_and_drops_what_was_not_sent(run: Run) -> None:
    size = 64 * 1024 * 1024  # far more than the sockets' buffers hold
    received: list[int] = []
    go_on = asyncio.Event()

    async def reads_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await go_on.wait()
        total = 0
        try:
            while data := await reader.read(1 << 20):
                total += len(data)
        except ConnectionError:
            pass
        received.append(total)

    async def main() -> None:
        served = Served(reads_late)
        await served.start()
        connection = await connector().connect(("http", "127.0.0.1", served.port), 5.0)
        with pytest.raises(httpx.WriteTimeout):
            await connection.write(b"x" * size, 0.05)  # the server reads nothing yet
        connection.close()  # at once: what is still buffered is not sent
        go_on.set()
        async with asyncio.timeout(10):
            while not received:
                await asyncio.sleep(0.01)
        assert received[0] < size
        served.server.close()

    run(main())


def test_an_idle_connection_past_its_keep_alive_is_closed_and_never_reused(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "SWEEP_INTERVAL_S", 0.2)

    async def main() -> None:
        served, other = Served(answer_each), Served(answer_each)
        await served.start()
        await other.start()
        opens = connector()
        pool = Pool(opens.connect, 4, expiry=0.1)
        origin = ("http", "127.0.0.1", served.port)
        first = await pool.acquire(origin, 5.0, 5.0)  # a sweep is due in 0.2 s
        pool.release(first, keep=True)
        await asyncio.sleep(0.15)  # expired, and no sweep is due yet
        second = await pool.acquire(origin, 5.0, 5.0)
        assert second is not first and opens.opened == 2  # not given the expired one
        pool.release(second, keep=True)
        await asyncio.sleep(0.3)  # expired again, and a sweep is due
        third = await pool.acquire(("http", "127.0.0.1", other.port), 5.0, 5.0)
        await asyncio.sleep(0.05)
        assert served.closed == 2  # the sweep closed it, though no request wanted it
        kept = await pool.acquire(("http", "127.0.0.1", other.port), 5.0, 5.0)
        pool.release(kept, keep=True)  # within its keep-alive: the next one is it
        assert await pool.acquire(("http", "127.0.0.1", other.port), 5.0, 5.0) is kept
        assert opens.opened == 4 and third is not kept
        pool.close()
        served.server.close()
        other.server.close()

    run(main())


def test_a_silent_server_times_out_and_a_refused_connect_fails(
    make_transport: MakeTransport, run: Run
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        served = Served(silent)
        origin = await served.start()
        transport = make_transport(read=0.2)
        with pytest.raises(httpx.ReadTimeout):
            await get(transport, f"http://{origin}/")
        served.server.close()
        await served.server.wait_closed()
        with pytest.raises(httpx.ConnectError):
            await get(transport, f"http://{origin}/")
        await transport.aclose()

    run(main())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_verifies_the_certificate_and_keeps_the_connection(
    make_transport: MakeTransport, run: Run, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    names: list[str | None] = []  # the server name (SNI) of each handshake
    server_side.sni_callback = lambda sock, name, context: names.append(name)

    async def main() -> None:
        served = Served(answer_each)
        await served.start(server_side)
        url = f"https://localhost:{served.port}/"
        trusting = make_transport(verify=ssl.create_default_context(cafile=str(cert)))
        for _ in range(3):
            assert len(await get(trusting, url)) == 100_000
        assert served.accepted == 1 and names == ["localhost"]
        await trusting.aclose()
        strict = make_transport(verify=ssl.create_default_context())
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await get(strict, url)
        await strict.aclose()
        served.server.close()

    run(main())


def test_the_fetch_loop_is_uvloop_when_installed_and_asyncio_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uvloop = pytest.importorskip("uvloop")
    for kind, expected in (("auto", True), ("uvloop", True), ("asyncio", False)):
        loop = new_event_loop(kind)  # type: ignore[arg-type]
        assert isinstance(loop, uvloop.Loop) is expected, kind
        loop.close()
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    loop = new_event_loop("auto")
    assert not isinstance(loop, uvloop.Loop)
    loop.close()
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        new_event_loop("uvloop")
