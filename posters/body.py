"""Reading a response body within a byte cap, however it is sent.

The cap applies to the bytes after decompression, which happens in bounded steps, so a
small gzip bomb cannot inflate in memory; a body that passes the cap is refused as soon
as it does, without reading the rest.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx

from posters.errors import PosterError, PosterTooLarge, TransientError
from posters.urls import display_url

# zlib wbits of each accepted content-encoding (47: a gzip or a zlib header)
CONTENT_ENCODINGS = {"gzip": 47, "x-gzip": 47, "deflate": 15}


class _CappedBuffer:
    """Chunks of a body, decompressed in bounded steps; `size` may pass the cap by one step."""

    def __init__(self, max_bytes: int, decoder: zlib._Decompress | None):
        self.max_bytes = max_bytes
        self.decoder = decoder
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, raw: bytes) -> None:
        """Append `raw` (decompressed); stop early once over the cap."""
        if self.decoder is None:
            self.size += len(raw)
            self.chunks.append(raw)
            return
        data = raw
        while data:
            out = self.decoder.decompress(data, self.max_bytes - self.size + 1)
            data = self.decoder.unconsumed_tail
            self.size += len(out)
            if self.size > self.max_bytes:
                return
            self.chunks.append(out)
            if self.decoder.eof:
                return

    @property
    def over(self) -> bool:
        return self.size > self.max_bytes


def _decoder(response: httpx.Response, url: str) -> zlib._Decompress | None:
    """A decompressor for the response's content-encoding; None for identity."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower() or "identity"
    if encoding in CONTENT_ENCODINGS:
        return zlib.decompressobj(CONTENT_ENCODINGS[encoding])
    if encoding != "identity":
        raise PosterError(
            f"{display_url(url)} is sent with content-encoding {encoding[:40]!r}, "
            "which is not accepted"
        )
    return None


async def read_capped(response: httpx.Response, url: str, max_bytes: int, image: bool) -> bytes:
    """The body, decompressed in bounded steps, refused as soon as it passes `max_bytes`."""
    too_big = PosterTooLarge if image else PosterError
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big(f"{display_url(url)} is {int(declared)} bytes, over the cap of {max_bytes}")
    decoder = _decoder(response, url)
    if response.is_stream_consumed:  # a body already in memory (an in-process transport)
        decoder, source = None, _in_memory(response.content)
    else:
        source = response.aiter_raw()
    body = _CappedBuffer(max_bytes, decoder)
    try:
        async for raw in source:
            body.add(raw)
            if body.over:
                what = "decompresses to more than" if decoder is not None else "is over"
                raise too_big(f"{display_url(url)} {what} the cap of {max_bytes} bytes")
    except httpx.TimeoutException as exc:
        raise TransientError(f"timed out reading {display_url(url)}") from exc
    except zlib.error as exc:
        raise PosterError(f"{display_url(url)} sent a body that does not decode: {exc}") from exc
    except httpx.TransportError as exc:
        what = type(exc).__name__
        raise TransientError(f"connection lost reading {display_url(url)}: {what}") from exc
    return b"".join(body.chunks)


async def _in_memory(content: bytes) -> AsyncIterator[bytes]:
    yield content
