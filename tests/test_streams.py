"""Connections on asyncio streams: reuse, closed connections, timeouts, TLS.

Each test runs on both transports that use them: the fetcher's own (`posters.http.transport`)
and httpcore's pool on `posters.streams` (which proxied requests go through), and on both
event loops the fetcher may run on (`posters.loops`: uvloop, asyncio's).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from posters import streams
from posters.loops import new_event_loop
from posters.http.connections import AddressGuard, CheckedBackend, checked_transport
from posters.http.transport import PosterTransport

Client = Callable[..., tuple[httpx.AsyncClient, CheckedBackend]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def ok(body: bytes = b"hello", close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n"
    return head % (len(body), connection) + body


async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)


async def loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]  # `localhost` without asking the system (it may list ::1 too)


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


@pytest.fixture(params=["poster", "httpcore"])
def client(request: pytest.FixtureRequest) -> Client:
    """Makes a client on one of the two transports, and its guarded network backend."""

    def make(
        limits: httpx.Limits | None = None, verify: ssl.SSLContext | None = None
    ) -> tuple[httpx.AsyncClient, CheckedBackend]:
        limits = limits or httpx.Limits()
        guard = AddressGuard(["127.0.0.1"], loopback)
        transport: httpx.AsyncBaseTransport
        if request.param == "poster":
            backend = CheckedBackend(guard, streams.AsyncioBackend())
            transport = PosterTransport(backend, limits, verify)
        else:
            kwargs = {"limits": limits} if verify is None else {"limits": limits, "verify": verify}
            transport = checked_transport(guard, **kwargs)  # type: ignore[arg-type]
            backend = transport._pool._network_backend  # type: ignore[attr-defined]
        assert isinstance(backend, CheckedBackend)
        return httpx.AsyncClient(transport=transport), backend

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
    client: Client, run: Run
) -> None:
    async def main() -> None:
        server = await serve(answer_each)
        port = server.sockets[0].getsockname()[1]
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        http, backend = client(limits=limits)
        async with http:
            for _ in range(3):
                pages = await asyncio.gather(
                    *(http.get(f"http://127.0.0.1:{port}/{i}") for i in range(12))
                )
                assert [len(p.content) for p in pages] == [100_000] * 12
        assert 1 <= backend.opened <= 4
        server.close()

    run(main())


def test_a_connection_the_server_closed_is_not_reused(client: Client, run: Run) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok())  # keep-alive announced, then closed while idle
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await serve(once)
        port = server.sockets[0].getsockname()[1]
        http, backend = client()
        async with http:
            for _ in range(3):
                assert (await http.get(f"http://127.0.0.1:{port}/")).content == b"hello"
                await asyncio.sleep(0.05)
        assert backend.opened == 3
        server.close()

    run(main())


def test_an_idle_connection_past_its_keep_alive_is_closed_and_never_reused(
    client: Client, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "SWEEP_INTERVAL_S", 0.2)
    closed = []

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer_each(reader, writer)
        closed.append(True)  # the client closed its side

    async def main() -> None:
        server, other = await serve(counting), await serve(answer_each)
        port = server.sockets[0].getsockname()[1]
        http, backend = client(limits=httpx.Limits(keepalive_expiry=0.1))
        async with http:
            await http.get(f"http://127.0.0.1:{port}/a")
            await asyncio.sleep(0.15)  # expired, and no sweep is due yet
            await http.get(f"http://127.0.0.1:{port}/b")  # not given the expired one
            assert backend.opened == 2
            await asyncio.sleep(0.3)  # expired again, and a sweep is due
            await http.get(f"http://127.0.0.1:{other.sockets[0].getsockname()[1]}/")
            await asyncio.sleep(0.05)
            assert len(closed) == 2  # the sweep closed it, though no request wanted it
        server.close()
        other.close()

    run(main())


def test_a_silent_server_times_out_and_a_refused_connect_fails(client: Client, run: Run) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        server = await serve(silent)
        port = server.sockets[0].getsockname()[1]
        http, _ = client()
        async with http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"http://127.0.0.1:{port}/", timeout=0.2)
            server.close()
            await server.wait_closed()
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")

    run(main())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_verifies_the_certificate_and_keeps_the_connection(
    client: Client, run: Run, tmp_path: Path
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)

    async def main() -> None:
        server = await serve(answer_each, server_side)
        port = server.sockets[0].getsockname()[1]
        trusting, backend = client(verify=ssl.create_default_context(cafile=str(cert)))
        async with trusting:
            for _ in range(3):
                page = await trusting.get(f"https://localhost:{port}/")
                assert len(page.content) == 100_000
                ssl_object = page.extensions["network_stream"].get_extra_info("ssl_object")
                assert ssl_object.server_hostname == "localhost"
        assert backend.opened == 1
        assert backend.connects[0][1] == "127.0.0.1"
        strict, _ = client(verify=ssl.create_default_context())
        async with strict:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await strict.get(f"https://localhost:{port}/")
        server.close()

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
