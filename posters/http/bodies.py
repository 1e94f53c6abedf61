"""Reading a response body within a byte cap, however it is sent, and no further than needed.

The cap applies to the bytes received and to the bytes after decompression, which
happens in bounded steps, so a small gzip bomb cannot inflate in memory; a body that
passes the cap is refused as soon as it does, without reading the rest. The end of a
compressed stream ends the body: what is sent after it is dropped like any unwanted rest.
A reader may also stop once it has what it needs (a page's head names the poster). A body
that is left unread costs its connection, so a small rest is read and dropped instead.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Protocol

import httpx

from poster_genres.posters.errors import PosterError, PosterTooLarge, TransientError
from poster_genres.posters.http.response import Response
from poster_genres.posters.http.urls import display_url


def _inflater() -> ModuleType:
    """zlib-ng's inflate (faster; the `worker` extra installs it), else zlib's."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return zlib
    return zlib_ng


INFLATE = _inflater()  # `zlib` or a module with its interface; `INFLATE.error` is its error
# zlib wbits of each accepted content-encoding (47: a gzip or a zlib header)
CONTENT_ENCODINGS = {"gzip": 47, "x-gzip": 47, "deflate": 15}
# An unwanted rest of a body is read and dropped up to this size, for this long, to keep
# its connection; past that the connection is closed.
DISCARD_MAX_BYTES = 64 * 1024
DISCARD_MAX_S = 1.0
# A compressed read is inflated this much at a time, the reader's `enough` asked after each.
STEP_BYTES = 16 * 1024

Enough = Callable[[bytes], bool]  # fed the body as it arrives; True once the rest is not needed


class Decoder(Protocol):
    """What is used of a `decompressobj`, zlib's or zlib-ng's."""

    unconsumed_tail: bytes
    eof: bool

    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...


class _CappedBuffer:
    """Chunks of a body, decompressed in bounded steps; `size` may pass the cap by one step."""

    def __init__(self, max_bytes: int, decoder: Decoder | None):
        self.max_bytes = max_bytes
        self.decoder = decoder
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, raw: bytes) -> Iterator[bytes]:
        """Append `raw` decompressed, step by step (each step is yielded once appended).

        A step inflates at most `STEP_BYTES`, so that a reader that stops after one (see
        `read_capped`) does not pay for inflating the rest; it also stops once over the cap.
        """
        if self.decoder is None:
            self.size += len(raw)
            self.chunks.append(raw)
            if not self.over:
                yield raw
            return
        data = raw
        while True:
            limit = min(STEP_BYTES, self.max_bytes - self.size + 1)
            out = self.decoder.decompress(data, limit)
            data = self.decoder.unconsumed_tail
            self.size += len(out)
            if self.over:
                return
            self.chunks.append(out)
            yield out
            # done with this read: the stream ended (what follows it is dropped), or all
            # its input is in and a step that was not filled says zlib holds no more output
            if self.decoder.eof or (not data and len(out) < limit):
                return

    @property
    def ended(self) -> bool:
        """Whether a compressed stream has reached its end: the body is complete."""
        return self.decoder is not None and self.decoder.eof

    @property
    def over(self) -> bool:
        return self.size > self.max_bytes


def _decoder(answer: Response, url: str) -> Decoder | None:
    """A decompressor for the answer's content-encoding; None for identity."""
    encoding = answer.headers.get("content-encoding", "identity").strip().lower() or "identity"
    if encoding in CONTENT_ENCODINGS:
        return INFLATE.decompressobj(CONTENT_ENCODINGS[encoding])
    if encoding != "identity":
        raise PosterError(
            f"{display_url(url)} is sent with content-encoding {encoding[:40]!r}, "
            "which is not accepted"
        )
    return None


def decode_text(content: bytes, encoding: str | None) -> str:
    """`content` as text in its charset (`Response.charset`: one of a known few), else UTF-8."""
    return content.decode(encoding or "utf-8", errors="replace")


async def read_capped(
    answer: Response, url: str, max_bytes: int, image: bool, enough: Enough | None = None
) -> bytes:
    """The body, decompressed in bounded steps, refused as soon as it passes `max_bytes`.

    With `enough`, reading stops (the rest is dropped) once it says the body so far will do.
    """
    too_big = PosterTooLarge if image else PosterError
    declared = answer.declared_length
    if declared is not None and declared > max_bytes:
        raise too_big(f"{display_url(url)} is {declared} bytes, over the cap of {max_bytes}")
    decoder = _decoder(answer, url)
    source = answer.raw_chunks()
    body = _CappedBuffer(max_bytes, decoder)
    raw_size = 0
    try:
        async for raw in source:
            raw_size += len(raw)
            if raw_size > max_bytes:
                raise too_big(f"{display_url(url)} is over the cap of {max_bytes} bytes")
            done = _enough_in(body.add(raw), enough)
            if body.over:
                what = "decompresses to more than" if decoder is not None else "is over"
                raise too_big(f"{display_url(url)} {what} the cap of {max_bytes} bytes")
            if done or body.ended:
                rest = None if declared is None else declared - raw_size
                await drain(source, rest, answer.body_received())
                break
    except httpx.TimeoutException as exc:
        raise TransientError(f"timed out reading {display_url(url)}") from exc
    except INFLATE.error as exc:
        raise PosterError(f"{display_url(url)} sent a body that does not decode: {exc}") from exc
    except httpx.TransportError as exc:
        what = type(exc).__name__
        raise TransientError(f"connection lost reading {display_url(url)}: {what}") from exc
    return b"".join(body.chunks)


def _enough_in(steps: Iterator[bytes], enough: Enough | None) -> bool:
    """Take the steps of one read until `enough` says the body so far will do."""
    for added in steps:
        if enough is not None and enough(added):
            return True
    return False


async def drain(
    chunks: AsyncIterator[bytes], expected: int | None = None, received: bool = False
) -> None:
    """Read and drop the rest of a body, so that its connection can be used again.

    Gives up past `DISCARD_MAX_BYTES` or `DISCARD_MAX_S`, or at once when `expected`
    (the bytes announced) is more than that: the connection is closed then. A rest that
    has all been `received` waits for nothing, and needs no timer.
    """
    if expected is not None and expected > DISCARD_MAX_BYTES:
        return
    try:
        if received:
            await _drop(chunks)
        else:
            async with asyncio.timeout(DISCARD_MAX_S):
                await _drop(chunks)
    except (TimeoutError, httpx.TransportError):
        return


async def _drop(chunks: AsyncIterator[bytes]) -> None:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > DISCARD_MAX_BYTES:
            return


async def discard_body(answer: Response) -> None:
    """Read and drop a small unwanted body (a redirect's, an error's) to keep the connection."""
    await drain(answer.raw_chunks(), answer.declared_length, answer.body_received())
