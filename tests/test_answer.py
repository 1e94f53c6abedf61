"""The fetcher's own requests and answers say what httpx's would (`posters.http.response`).

Without proxies the fetcher writes each request's head itself and reads the answer's
headers itself (`GuardedClient._send`); these tests hold both to httpx's models, byte for
byte and value for value, and check that the fetcher takes that way only without proxies.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from posters import FetchSettings, PosterFetcher
from posters.http.response import Answer
from posters.http.transport import direct_head, request_head
from posters.http.urls import request_target

RAW_HEADERS = [
    [(b"Content-Type", b"text/html; charset=UTF-8"), (b"Content-Length", b"12")],
    [(b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"X-Odd", b"a\x7fb")],
    [(b"Location", "/movie/603-café".encode()), (b"Server", b"stand-in")],  # UTF-8
    [(b"Location", "/movie/603-caf\xe9".encode("latin-1")), (b"Vary", b"Accept-Encoding")],
    [(b"Content-Encoding", b"gzip"), (b"CONTENT-ENCODING", b"br")],
    [],
]
CONTENT_TYPES = [
    "text/html; charset=utf-8",
    "text/html;charset=UTF-8",
    'text/html; charset="ISO-8859-1"',
    'text/html; charset="utf-8',
    "text/html; charset = utf-8",
    "text/html",
    "text/html; charset=",
    "text/html; charset=utf-8; q=1",
    'text/html; foo="charset=x"',
    "text/html; charset=a; charset=b",
    "text/html; CHARSET=Latin1 ",
    "text/html; charset*=utf-8''%e2",
]


async def _nothing() -> None:
    return None


@pytest.mark.parametrize("raw", RAW_HEADERS)
@pytest.mark.parametrize("status", [200, 204, 301, 302, 307, 404, 503])
def test_headers_and_status_read_as_httpx_reads_them(
    raw: list[tuple[bytes, bytes]], status: int
) -> None:
    ours = Answer.of_raw(status, raw, None, _nothing, "HTTP/1.1", b"OK")  # type: ignore[arg-type]
    theirs = httpx.Response(status, headers=raw)
    assert ours.headers == {name: theirs.headers[name] for name in theirs.headers}
    assert (ours.is_success, ours.is_redirect) == (theirs.is_success, theirs.has_redirect_location)
    assert ours.charset == theirs.charset_encoding


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_the_charset_is_the_one_httpx_reads(content_type: str) -> None:
    raw = [(b"Content-Type", content_type.encode())]
    ours = Answer.of_raw(200, raw, None, _nothing, "HTTP/1.1", b"OK")  # type: ignore[arg-type]
    assert ours.charset == httpx.Response(200, headers=raw).charset_encoding


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/movie/603?language=en-US",
        "https://Image.TMDB.org/t/p/w342/abc.jpg",
        "http://www.themoviedb.org:80/movie/603-the-matrix?language=en-US#cast",
        "http://[::1]:8080/a/../b?q=%20x",
        'http://h/a b/é?q="x"',
        "http://bücher.example/",
        "http://host",
    ],
)
def test_the_head_written_without_httpx_is_the_one_httpx_would_send(url: str) -> None:
    fetcher = PosterFetcher(FetchSettings(tmdb_base_url="http://127.0.0.1:8000"))
    client, guarded = fetcher._client, fetcher._http
    for headers in ({"Accept": "image/*", "Accept-Encoding": "identity"}, {"User-Agent": "x/1"}):
        built = client.build_request("GET", url, headers=headers)
        written = direct_head(request_target(url), guarded._header_fields(headers))
        assert written == request_head(built)
    asyncio.run(fetcher.aclose())


def test_only_a_fetcher_without_proxies_skips_httpx_models() -> None:
    direct = PosterFetcher(FetchSettings())
    assert direct._http._direct is direct._client._transport
    proxied = PosterFetcher(
        FetchSettings(fetch_use_env_proxy=True, https_proxy="http://127.0.0.1:3128")
    )
    assert proxied._http._direct is None
    given = PosterFetcher(
        FetchSettings(), transport=httpx.MockTransport(lambda r: httpx.Response(200))
    )
    assert given._http._direct is None
    for fetcher in (direct, proxied, given):
        asyncio.run(fetcher.aclose())
