"""What the fetcher reads of a response (`posters.http.response.Response`).

Headers are read as httpx reads them (names without case, repeated values joined, ASCII,
else UTF-8, else Latin-1), and so are the status's success and redirect. The charset is
read only when it is one of a known few (`CHARSETS`), the first one named; a length only
when it is written in ASCII digits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from poster_genres.posters.http.response import Response

RAW_HEADERS = [
    [(b"Content-Type", b"text/html; charset=UTF-8"), (b"Content-Length", b"12")],
    [(b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"X-Odd", b"a\x7fb")],
    [(b"Location", "/movie/603-café".encode()), (b"Server", b"stand-in")],  # UTF-8
    [(b"Location", "/movie/603-caf\xe9".encode("latin-1")), (b"Vary", b"Accept-Encoding")],
    [(b"Content-Encoding", b"gzip"), (b"CONTENT-ENCODING", b"br")],
    [],
]
CHARSETS = [
    ("text/html; charset=utf-8", "utf-8"),
    ("text/html;charset=UTF-8", "utf-8"),
    ('text/html; charset="ISO-8859-1"', "latin-1"),
    ('text/html; charset="utf-8', "utf-8"),
    ("text/html; charset = utf-8", "utf-8"),
    ("text/html", None),
    ("text/html; charset=", None),
    ("text/html; charset=utf-8; q=1", "utf-8"),
    ('text/html; foo="charset=x"', None),
    ("text/html; charset=a; charset=b", None),
    ("text/html; charset=latin1; charset=utf-8", "latin-1"),  # the first one named
    ("text/html; charset=koi8-r; charset=utf-8", None),  # the first, though not a known one
    ("text/html; CHARSET=Latin1 ", "latin-1"),
    ("text/html; charset*=utf-8''%e2", None),
    ("text/html; charset=windows-1252", "cp1252"),
    ("text/html; charset=UTF-16LE", "utf-16-le"),
    ("text/html; charset=utf-7", None),  # a codec Python has, but not one of the few
    ("text/html; charset=rot13", None),
    ("text/html; charset=" + "a" * 5000, None),
]


async def _nothing() -> None:
    return None


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - an async generator that yields nothing


def wire(status: int, raw: list[tuple[bytes, bytes]]) -> Response:
    return Response.from_wire(status, raw, _no_body, _nothing, "HTTP/1.1", b"OK", lambda: True)


@pytest.mark.parametrize("raw", RAW_HEADERS)
@pytest.mark.parametrize("status", [200, 204, 301, 302, 307, 404, 503])
def test_headers_and_status_read_as_httpx_reads_them(
    raw: list[tuple[bytes, bytes]], status: int
) -> None:
    ours = wire(status, raw)
    theirs = httpx.Response(status, headers=raw)
    assert ours.headers == {name: theirs.headers[name] for name in theirs.headers}
    assert (ours.is_success, ours.is_redirect) == (theirs.is_success, theirs.has_redirect_location)
    assert ours.status == status and ours.reason == "OK" and ours.version == "HTTP/1.1"


@pytest.mark.parametrize("content_type,charset", CHARSETS)
def test_the_charset_is_the_first_named_and_only_one_of_a_known_few(
    content_type: str, charset: str | None
) -> None:
    assert wire(200, [(b"Content-Type", content_type.encode())]).charset == charset


@pytest.mark.parametrize(
    "value,length",
    [
        ("12", 12),
        (" 12 ", 12),
        ("0", 0),
        ("١٢", None),  # digits, but not ASCII ones
        ("+12", None),
        ("1_000", None),
        ("12, 12", None),  # two Content-Length headers, joined
        ("", None),
        ("9" * 19, None),
        (None, None),
    ],
)
def test_a_declared_length_is_read_only_from_ascii_digits(
    value: str | None, length: int | None
) -> None:
    raw = [] if value is None else [(b"Content-Length", value.encode())]
    assert wire(200, raw).declared_length == length


def test_the_content_type_is_its_media_type_in_lower_case() -> None:
    for value, expected in [("Text/HTML; charset=x", "text/html"), ("image/JPEG", "image/jpeg")]:
        assert wire(200, [(b"Content-Type", value.encode())]).content_type == expected
    assert wire(200, []).content_type == ""


def test_the_body_and_its_close_are_the_ones_given() -> None:
    closed: list[bool] = []
    arrived = [False]

    async def chunks() -> AsyncIterator[bytes]:
        yield b"po"
        yield b"ster"

    async def close() -> None:
        closed.append(True)

    async def main() -> None:
        response = Response.from_wire(
            200, [], chunks, close, "HTTP/1.0", b"Fine", lambda: arrived[0]
        )
        assert not response.body_received()
        assert b"".join([chunk async for chunk in response.raw_chunks()]) == b"poster"
        arrived[0] = True
        assert response.body_received()
        await response.aclose()
        assert closed == [True] and (response.version, response.reason) == ("HTTP/1.0", "Fine")

    asyncio.run(main())
