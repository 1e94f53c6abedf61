"""CPU per movie page of reading it and finding its poster (and genres): PAGE_GENRES on and off.

No network: each of the 64 TMDB-shaped bench pages is gzipped and fed to the fetcher's body
reader (`read_capped`) in raw pieces of `--chunk` bytes, through the `HeadWatch` that
decides when reading stops, then the poster is taken (the head's og:image, or a parse of
what was read) and, with genres on, the genres span. Three kinds of page: as TMDB's (genres
in the facts), facts without genres, neither facts nor genres (read up to the bound).

    python bench/page_genres.py [--chunk 4096,16384,65536] [--rounds 2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import time
from collections.abc import AsyncIterator

import httpx

from bench.pages import tmdb_page
from poster_genres.posters.http.bodies import read_capped
from poster_genres.posters.http.response import Response
from poster_genres.posters.tmdb.genres import page_genres
from poster_genres.posters.tmdb.scrape import HeadWatch, poster_candidates

URL = "http://h:1/movie/1"


def pages(kind: str) -> list[bytes]:
    """The bench's 64 pages, gzipped, with the genres span (and the facts) taken out or not."""
    found = []
    for variant in range(64):
        html = tmdb_page(
            variant, "http://h:1", f"p{variant}.jpg", 150_000 + variant * 2371 % 150_000
        )
        raw = html.encode()
        if kind != "genres":
            raw = raw.replace(b'class="genres"', b'class="xgenre"')
        if kind == "neither":
            raw = raw.replace(b'class="facts"', b'class="xfact"')
        found.append(gzip.compress(raw))
    return found


class Pieces(httpx.AsyncByteStream):
    def __init__(self, data: bytes, chunk: int):
        self.data, self.chunk = data, chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            yield self.data[start : start + self.chunk]


async def one(raw: bytes, chunk: int, genres: bool) -> int:
    """Read and scrape one page as the fetcher does; the bytes read (decompressed)."""
    headers = {"content-encoding": "gzip", "content-type": "text/html; charset=utf-8"}
    response = httpx.Response(200, headers=headers, stream=Pieces(raw, chunk))
    watch = HeadWatch(URL, "utf-8", lambda url: True, genres)
    content = await read_capped(
        Response.from_httpx(response), URL, 2 * 1024 * 1024, False, watch.feed
    )
    if genres:
        page_genres(content, "utf-8")
    if watch.poster is None:
        poster_candidates(content.decode("utf-8", errors="replace"), URL)
    return len(content)


async def per_page(raws: list[bytes], chunk: int, genres: bool, rounds: int) -> tuple[float, int]:
    """CPU seconds per page over `rounds` passes, and the bytes read per page (decompressed)."""
    began, size = time.process_time(), 0
    for _ in range(rounds):
        for raw in raws:
            size += await one(raw, chunk, genres)
    return (time.process_time() - began) / (rounds * len(raws)), size // (rounds * len(raws))


async def measure(raws: list[bytes], chunk: int, rounds: int, repeats: int) -> list[float]:
    """Off and on, alternately `repeats` times: the best CPU ms per page of each, KiB read."""
    best = [float("inf"), float("inf")]
    sizes = [0, 0]
    for _ in range(repeats):  # alternating, so that a busy spell of the machine hits both
        for genres in (False, True):
            cpu, sizes[genres] = await per_page(raws, chunk, genres, rounds)
            best[genres] = min(best[genres], cpu * 1000)
    return [*best, sizes[0] / 1024, sizes[1] / 1024]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk", default="4096,16384,65536", help="raw piece sizes, bytes")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the pages per figure")
    parser.add_argument("--repeats", type=int, default=7, help="figures taken, the best kept")
    args = parser.parse_args()
    print(
        f"{'page':<8} {'piece':>6}  {'off ms':>7} {'on ms':>7} {'extra':>6}  {'KiB read off -> on':>18}"
    )
    for kind in ("genres", "facts", "neither"):
        raws = pages(kind)
        for chunk in (int(c) for c in args.chunk.split(",")):
            off, on, read_off, read_on = await measure(raws, chunk, args.rounds, args.repeats)
            print(
                f"{kind:<8} {chunk:>6}  {off:7.3f} {on:7.3f} {on - off:+6.3f}  "
                f"{read_off:8.1f} -> {read_on:6.1f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
