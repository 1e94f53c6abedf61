"""Pages and hosts built to stall, bloat or rob the fetcher: none can (docs/reliability.md).

Each test drives the public fetcher against loopback servers. Work per page is checked by
the event loop's longest stall while the page is fetched (a loop that is held cannot run
a timer), memory by what a server manages to send, descriptors by counting them.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from demo.hostile_pages import WORST_PAGES, with_stall
from demo.tmdb import StandInMovie, TmdbStandIn, respond
from poster_genres.posters import FetchSettings, Poster, PosterError, PosterFetcher
from tests.fixtures import COLOURS, poster_bytes, self_signed

MAX_STALL_S = 1.0  # the longest the fetch loop may be held by one page
KiB, MiB = 1024, 1024 * 1024


def settings_for(standin: TmdbStandIn, **overrides: Any) -> FetchSettings:
    values: dict[str, Any] = {
        "tmdb_base_url": standin.base_url,
        "tmdb_image_base_url": f"{standin.base_url}/t/p/w500",
        "read_timeout_s": 5.0,
        "fetch_attempts": 2,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.1,
        "fetch_deadline_s": 60.0,
    }
    values.update(overrides)
    return FetchSettings(**values)


def fetch_timed(settings: FetchSettings, tmdb_id: int) -> tuple[Any, float]:
    """Fetch one poster; (the poster or the error, the fetch loop's longest stall)."""

    async def main() -> tuple[Any, float]:
        async with PosterFetcher(settings) as fetcher:
            return await with_stall(fetcher.fetch(tmdb_id))

    return asyncio.run(main())


def serve_page(standin: TmdbStandIn, tmdb_id: int, body: bytes, content_type: str) -> None:
    """Serve `body` as the page of `tmdb_id` (no slug redirect)."""
    page = lambda h: respond(h, 200, body, content_type)
    standin.routes[f"/movie/{tmdb_id}"] = page


# -- bounded work per page -------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(WORST_PAGES))
@pytest.mark.parametrize("charset", ["utf-8", "punycode", "utf-8; charset=utf-8"])
@pytest.mark.parametrize("size", [60 * KiB, 2 * MiB - 64 * KiB])  # a head, a page at the cap
def test_no_page_holds_the_fetch_loop(kind: str, charset: str, size: int) -> None:
    """Pages up to the byte cap built to make a parser slow, in charsets that would be."""
    page = WORST_PAGES[kind](size)
    with TmdbStandIn() as standin:
        serve_page(standin, 9, page, f"text/html; charset={charset}")
        outcome, stall = fetch_timed(settings_for(standin, page_genres=True), 9)
    assert isinstance(outcome, PosterError | Poster), outcome
    assert stall < MAX_STALL_S, f"{kind} ({charset}, {size} B) held the loop {stall:.2f} s"


def test_a_content_type_naming_charset_thousands_of_times_is_read_in_bounded_time() -> None:
    poster = poster_bytes(COLOURS["Blue"])
    with TmdbStandIn({3: StandInMovie(poster)}) as standin:
        url = standin.image_url(3)
        page = f'<html><head><meta property="og:image" content="{url}"></head>'.encode()
        content_type = "text/html; " + "charset=utf-8; " * 4000  # a 60 KB header
        serve_page(standin, 3, page, content_type)
        outcome, stall = fetch_timed(settings_for(standin), 3)
    assert isinstance(outcome, Poster) and outcome.content == poster, outcome
    assert stall < MAX_STALL_S


def test_a_punycode_page_is_read_as_utf8() -> None:
    """A charset off the list is not decoded with its own codec: the page is read as UTF-8."""
    poster = poster_bytes(COLOURS["Green"])
    with TmdbStandIn({5: StandInMovie(poster)}) as standin:
        url = standin.image_url(5)
        page = f'<html><head><meta property="og:image" content="{url}"></head>'.encode()
        serve_page(standin, 5, page + b"x" * 600 * KiB, "text/html; charset=punycode")
        outcome, stall = fetch_timed(settings_for(standin), 5)
    assert isinstance(outcome, Poster) and outcome.content == poster
    assert stall < MAX_STALL_S


# -- bounded memory per request --------------------------------------------------------------


def test_data_after_the_end_of_a_gzip_body_ends_the_body() -> None:
    """A chunked body that goes on after its gzip member: the rest is not read."""
    poster = poster_bytes(COLOURS["Red"])
    sent = [0]
    with TmdbStandIn({6: StandInMovie(poster)}) as standin:
        url = standin.image_url(6)
        member = gzip.compress(f'<head><meta property="og:image" content="{url}">'.encode())

        def endless(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            for name, value in (
                ("Content-Type", "text/html"),
                ("Content-Encoding", "gzip"),
                ("Transfer-Encoding", "chunked"),
            ):
                h.send_header(name, value)
            h.end_headers()
            junk = b"\0" * 64 * KiB
            try:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(member), member))
                while sent[0] < 256 * MiB:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(junk), junk))
                    sent[0] += len(junk)
            except OSError:
                return

        standin.routes["/movie/6"] = endless
        outcome, _ = fetch_timed(settings_for(standin, page_genres=False), 6)
    assert isinstance(outcome, Poster) and outcome.content == poster, outcome
    assert sent[0] < 16 * MiB, f"{sent[0] // MiB} MiB sent after the gzip member"


# -- credentials stay with their origin ------------------------------------------------------


def test_the_api_token_goes_only_to_the_api() -> None:
    """A redirect from the API to another allowlisted host carries no Authorization."""
    poster = poster_bytes(COLOURS["Blue"])
    seen: dict[str, str | None] = {}
    with (
        TmdbStandIn({8: StandInMovie(poster)}) as api,
        TmdbStandIn({8: StandInMovie(poster)}) as cdn,
    ):

        def moved(h: BaseHTTPRequestHandler) -> None:
            seen["api"] = h.headers.get("Authorization")
            respond(h, 302, b"", "text/plain", {"Location": f"{cdn.base_url}/3/movie/8"})

        api.routes["/3/movie/8"] = moved
        cdn.routes["/3/movie/8"] = lambda h: (  # type: ignore[func-returns-value]
            seen.__setitem__("cdn", h.headers.get("Authorization"))
            or respond(h, 200, b'{"poster_path": "/8.jpg"}', "application/json")
        )
        token = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.SIG"
        settings = settings_for(
            api,
            tmdb_api_key=SecretStr(token),
            tmdb_api_url=f"{api.base_url}/3",
            tmdb_image_base_url=f"{cdn.base_url}/t/p/w500",
            poster_hosts=[cdn.host],
        )
        outcome, _ = fetch_timed(settings, 8)
    assert isinstance(outcome, Poster), outcome
    assert seen == {"api": f"Bearer {token}", "cdn": None}


def test_no_hop_leaves_https_for_http(tmp_path: Path) -> None:
    """An https page that redirects to http (on an allowed host) is not followed."""
    outcome = _over_tls(tmp_path, lambda port: b"http://127.0.0.1:%d/movie/1" % port)
    assert isinstance(outcome, PosterError) and outcome.code == "invalid_url", outcome
    assert "from https" in outcome.detail


def test_userinfo_is_refused_and_never_shown() -> None:
    with TmdbStandIn() as standin:
        location = f"http://:hunter2@{standin.host}/movie/2"
        standin.routes["/movie/2"] = lambda h: respond(
            h, 302, b"", "text/plain", {"Location": location}
        )
        outcome, _ = fetch_timed(settings_for(standin), 2)
    assert isinstance(outcome, PosterError) and outcome.code == "host_not_allowed", outcome
    assert "hunter2" not in outcome.detail


# -- connections, URLs, header numbers -------------------------------------------------------


def _over_tls(tmp_path: Path, location: Callable[[int], bytes]) -> Any:
    """Fetch movie 1 from an https site that redirects as `location(port)` says."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = self_signed(tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        port = writer.get_extra_info("sockname")[1]
        writer.write(
            b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: %s\r\n\r\n" % location(port)
        )
        await writer.drain()
        writer.close()

    async def main() -> Any:
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_side)
        port = server.sockets[0].getsockname()[1]
        os.environ["SSL_CERT_FILE"] = str(cert)
        try:
            settings = FetchSettings(tmdb_base_url=f"https://127.0.0.1:{port}", fetch_attempts=1)
            async with PosterFetcher(settings) as fetcher:
                return await with_stall(fetcher.fetch(1))
        finally:
            del os.environ["SSL_CERT_FILE"]
            server.close()

    return asyncio.run(main())[0]


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


SILENT_TLS_SERVER = r"""
import asyncio, ssl, sys
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(sys.argv[1], sys.argv[2])
async def silent(reader, writer):
    await reader.readuntil(b"\r\n\r\n")
    print("request", flush=True)
    await asyncio.sleep(3600)
async def main():
    server = await asyncio.start_server(silent, "127.0.0.1", 0, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_tls_connections_cancelled_mid_answer_are_closed_with_the_fetcher(tmp_path: Path) -> None:
    """A TLS server that accepts and never answers holds no descriptor past the fetcher."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = self_signed(tmp_path)
    server = subprocess.Popen(
        [sys.executable, "-c", SILENT_TLS_SERVER, str(cert), str(key)],
        stdout=subprocess.PIPE,
        text=True,
    )

    async def main(port: int) -> tuple[int, int]:
        before = _open_descriptors()
        settings = FetchSettings(tmdb_base_url=f"https://127.0.0.1:{port}", fetch_concurrency=8)
        fetcher = PosterFetcher(settings)
        tasks = [asyncio.create_task(fetcher.fetch(i)) for i in range(1, 9)]
        for _ in range(8):  # every request is in, its answer awaited
            await asyncio.to_thread(server.stdout.readline)  # type: ignore[union-attr]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await fetcher.aclose()
        return before, _open_descriptors()

    os.environ["SSL_CERT_FILE"] = str(cert)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        before, after = asyncio.run(main(port))
    finally:
        del os.environ["SSL_CERT_FILE"]
        server.kill()
        server.wait()
    assert after <= before, f"{after - before} descriptors still open after the fetcher closed"


def test_a_long_url_is_refused_before_it_is_kept() -> None:
    """Redirects to 60 KB URLs end as invalid_url at once; nothing of them is cached."""
    with TmdbStandIn() as standin:
        for n in range(1, 4):
            location = f"/movie/{n}-" + "x" * 60 * KiB
            standin.routes[f"/movie/{n}"] = lambda h, loc=location: respond(
                h, 302, b"", "text/plain", {"Location": loc}
            )

        async def main() -> list[Any]:
            async with PosterFetcher(settings_for(standin)) as fetcher:
                return await asyncio.gather(*map(fetcher.fetch, [1, 2, 3]), return_exceptions=True)

        outcomes = asyncio.run(main())
    for outcome in outcomes:
        assert isinstance(outcome, PosterError) and outcome.code == "invalid_url", outcome
        assert "over 8192" in outcome.detail


@pytest.mark.parametrize("header", ["²", "١٢", "1e3", "-1", "0x10"])
def test_a_retry_after_that_is_not_ascii_digits_is_ignored(header: str) -> None:
    """A 503 whose Retry-After is not plain digits is retried as any 503 (no internal error)."""
    poster = poster_bytes(COLOURS["Green"])
    movie = StandInMovie(poster, page_failures=[503], retry_after=header)
    with TmdbStandIn({4: movie}) as standin:
        outcome, _ = fetch_timed(settings_for(standin), 4)
    assert isinstance(outcome, Poster) and outcome.attempts == 3, outcome  # page twice, image
