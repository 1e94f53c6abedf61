"""Reading a compressed body: inflated in bounded steps, exact, and no further than needed."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from types import ModuleType

import pytest

from poster_genres.posters.http import bodies as body
from poster_genres.posters.http.bodies import STEP_BYTES, _CappedBuffer, _enough_in


def _zlib_ng() -> ModuleType:
    return pytest.importorskip("zlib_ng.zlib_ng")


Inflater = Callable[[], ModuleType]
# each test runs with zlib's inflate and with zlib-ng's, which the worker uses when installed
inflaters = pytest.mark.parametrize("inflater", [lambda: zlib, _zlib_ng], ids=["zlib", "zlib-ng"])


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


@inflaters
def test_any_split_of_the_compressed_bytes_inflates_to_the_body(inflater: Inflater) -> None:
    rng = random.Random(7)
    for size in (0, 1, STEP_BYTES - 1, STEP_BYTES, STEP_BYTES + 1, 300_000):
        body = bytes(rng.choice(b"<html> \xc3\xa9abcdefgh") for _ in range(size))
        packed = _gzip(body)
        buffer = _CappedBuffer(10_000_000, inflater().decompressobj(47))
        at = 0
        while at < len(packed):
            step = rng.randint(1, 70_000)
            assert all(len(piece) <= STEP_BYTES for piece in buffer.add(packed[at : at + step]))
            at += step
        assert b"".join(buffer.chunks) == body, size


@inflaters
def test_a_reader_that_has_enough_stops_inflating(inflater: Inflater) -> None:
    page = b"<html><head><meta property='og:image' content='x'></head>" + b"<p>filler</p>" * 80_000
    buffer = _CappedBuffer(10_000_000, inflater().decompressobj(47))
    seen = bytearray()

    def enough(added: bytes) -> bool:
        seen.extend(added)
        return b"</head>" in seen

    assert _enough_in(buffer.add(_gzip(page)), enough) is True  # the whole page in one read
    assert buffer.size <= STEP_BYTES < len(page) // 10  # one step inflated, not ~1 MB


@inflaters
def test_the_cap_stops_a_bomb_within_a_step(inflater: Inflater) -> None:
    buffer = _CappedBuffer(100_000, inflater().decompressobj(47))
    pieces = list(buffer.add(_gzip(b"\0" * 50_000_000)))
    assert buffer.over and buffer.size <= 100_000 + STEP_BYTES
    assert sum(len(p) for p in pieces) <= 100_000


def test_the_worker_inflates_with_zlib_ng_when_it_is_installed() -> None:
    assert body.INFLATE is _zlib_ng()
