"""An HTTP answer as the fetcher reads it: its status, its headers, its body as it arrives.

The fetcher's own transport (`posters.transport`) hands its answers over as `Answer`s
without building an `httpx.Response`; an answer that comes through httpx (a proxy, a test's
transport) is wrapped in one (`Answer.of_httpx`). Headers read as httpx reads them: names
without case, a repeated header's values joined with ", ", all values decoded as ASCII,
else UTF-8, else Latin-1.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import Message

import httpx

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PLAIN_CHARSET = re.compile(
    r';\s*charset=(?:"([A-Za-z0-9_.:\-]+)"|([A-Za-z0-9_.:\-]+))\s*(?:;|$)', re.IGNORECASE
)


class Answer:
    """One answer's status line and headers, and its body: raw chunks, or `content` in memory."""

    __slots__ = (
        "_chunks",
        "_close",
        "_received",
        "content",
        "headers",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        chunks: Callable[[], AsyncIterator[bytes]] | None,
        close: Callable[[], Awaitable[None]],
        version: str = "HTTP/1.1",
        reason: str = "",
        content: bytes | None = None,
        received: Callable[[], bool] | None = None,
    ):
        self.status = status
        self.headers = headers  # lower-case names
        self._chunks = chunks
        self._close = close
        self.version = version
        self.reason = reason
        self.content = content  # the body already read and decoded (an in-process transport)
        self._received = received  # whether the whole body has arrived, when that is known

    @classmethod
    def of_raw(
        cls,
        status: int,
        raw: list[tuple[bytes, bytes]],
        chunks: Callable[[], AsyncIterator[bytes]],
        close: Callable[[], Awaitable[None]],
        version: str,
        reason: bytes,
        received: Callable[[], bool] | None = None,
    ) -> Answer:
        """An answer from the headers as they came on the wire."""
        reason_text = reason.decode("latin-1")
        return cls(status, _decoded(raw), chunks, close, version, reason_text, None, received)

    @classmethod
    def of_httpx(cls, response: httpx.Response) -> Answer:
        headers = {name: response.headers[name] for name in response.headers}
        content = response.content if response.is_stream_consumed else None
        return cls(
            response.status_code,
            headers,
            response.aiter_raw,
            response.aclose,
            response.http_version,
            response.reason_phrase,
            content,
        )

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        """A redirect to follow: a 3xx that says where (httpx's `has_redirect_location`)."""
        return self.status in REDIRECT_STATUSES and "location" in self.headers

    @property
    def charset(self) -> str | None:
        """The content-type's charset, lower case, as httpx's `charset_encoding` reads it."""
        content_type = self.headers.get("content-type")
        if content_type is None:
            return None
        mentions = content_type.lower().count("charset")
        if mentions == 0:
            return None
        plain = _PLAIN_CHARSET.search(content_type) if mentions == 1 else None
        if plain is not None:
            return (plain.group(1) or plain.group(2)).lower()
        message = Message()
        message["content-type"] = content_type
        return message.get_content_charset(failobj=None)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def declared_length(self) -> int | None:
        declared = self.headers.get("content-length", "").strip()
        return int(declared) if declared.isdigit() else None

    def body_received(self) -> bool:
        """Whether the rest of the body is in hand: reading it waits for nothing."""
        return self.content is not None or (self._received is not None and self._received())

    def raw_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, still encoded (or `content`, once, if it is in memory)."""
        if self.content is not None or self._chunks is None:
            return _once(self.content or b"")
        return self._chunks()

    async def aclose(self) -> None:
        await self._close()


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


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content
