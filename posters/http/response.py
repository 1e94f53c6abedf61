"""An HTTP response as the fetcher reads it: its status, its headers, its body as it arrives.

Both transports (`posters.http.transport`) hand their answers over as a `Response`.
Headers read as httpx reads them: names without case, a repeated header's values joined
with ", ", all values decoded as ASCII, else UTF-8, else Latin-1. What is read from a
header value is read by a bounded pattern from its first `MAX_FIELD_CHARS` characters.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_FIELD_CHARS = 1024
# the charsets a page is decoded with (their aliases as Python's codecs name them); any other
# is read as UTF-8: a codec chosen by the server must not be a slow or surprising one
CHARSETS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "us-ascii": "ascii",
    "ascii": "ascii",
    "iso-8859-1": "latin-1",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "windows-1252": "cp1252",
    "cp1252": "cp1252",
    "iso-8859-15": "iso8859-15",
    "utf-16": "utf-16",
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
}
_CHARSET = re.compile(r";\s*charset\s*=\s*\"?([A-Za-z0-9_.:\-]{1,40})", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]{1,18}")


class Response:
    """One response's status line and headers, and its body's raw chunks as they arrive."""

    __slots__ = ("_chunks", "_close", "_received", "headers", "reason", "status", "version")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        chunks: Callable[[], AsyncIterator[bytes]],
        close: Callable[[], Awaitable[None]],
        version: str = "HTTP/1.1",
        reason: str = "",
        received: Callable[[], bool] | None = None,
    ):
        self.status = status
        self.headers = headers  # lower-case names
        self._chunks = chunks
        self._close = close
        self.version = version
        self.reason = reason
        self._received = received  # whether the whole body has arrived, when that is known

    @classmethod
    def from_wire(
        cls,
        status: int,
        raw: list[tuple[bytes, bytes]],
        chunks: Callable[[], AsyncIterator[bytes]],
        close: Callable[[], Awaitable[None]],
        version: str,
        reason: bytes,
        received: Callable[[], bool],
    ) -> Response:
        """A response from the headers as they came on the wire."""
        text = reason.decode("latin-1")
        return cls(status, _decoded(raw), chunks, close, version, text, received)

    @classmethod
    def from_httpx(cls, response: httpx.Response) -> Response:
        """A response that came through an httpx transport (a proxy's, or a test's)."""
        headers = {name: response.headers[name] for name in response.headers}
        stream = response.stream  # the raw body, even where httpx has already read it
        assert isinstance(stream, httpx.AsyncByteStream), "an async transport's response"
        return cls(
            response.status_code,
            headers,
            stream.__aiter__,
            response.aclose,
            response.http_version,
            response.reason_phrase,
        )

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        """A redirect to follow: a 3xx that says where."""
        return self.status in REDIRECT_STATUSES and "location" in self.headers

    @property
    def charset(self) -> str | None:
        """The codec of the content-type's charset if it is one of `CHARSETS`; else None."""
        found = _CHARSET.search(self.headers.get("content-type", "")[:MAX_FIELD_CHARS])
        return CHARSETS.get(found.group(1).lower()) if found else None

    @property
    def content_type(self) -> str:
        value = self.headers.get("content-type", "")[:MAX_FIELD_CHARS]
        return value.split(";")[0].strip().lower()

    @property
    def declared_length(self) -> int | None:
        """The Content-Length, if it is written in ASCII digits."""
        return header_number(self.headers.get("content-length"))

    def body_received(self) -> bool:
        """Whether the rest of the body is in hand: reading it waits for nothing."""
        return self._received is not None and self._received()

    def raw_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, still encoded."""
        return self._chunks()

    async def aclose(self) -> None:
        await self._close()


def header_number(value: str | None) -> int | None:
    """A header's value as a number, if it is one written in ASCII digits (at most 18)."""
    if value is None:
        return None
    found = _DIGITS.fullmatch(value.strip())
    return int(found.group()) if found else None


def _decoded(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    encoding = "iso-8859-1"
    for candidate in ("ascii", "utf-8"):
        try:
            for name, value in raw:
                name.decode(candidate)
                value.decode(candidate)
        except UnicodeDecodeError:
            continue
        encoding = candidate
        break
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode(encoding).lower()
        text = value.decode(encoding)
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers
