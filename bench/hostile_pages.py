"""How long pages built to be worst cases hold the fetch loop (prints figures; not a test).

    python bench/hostile_pages.py [--bytes 2031616] [--rounds 3]

Each page of `demo.hostile_pages.WORST_PAGES` is served by a loopback stand-in of the
site and fetched by `PosterFetcher` with PAGE_GENRES on, as UTF-8 and as a charset off
the list (punycode). Printed per page: the fetch loop's longest stall and the fetch's wall
time, the medians of the rounds. The default size is the default page cap less 64 KiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from demo.hostile_pages import WORST_PAGES, with_stall
from demo.tmdb import TmdbStandIn, respond
from poster_genres.posters import FetchSettings, PosterFetcher


async def _fetch_one(settings: FetchSettings) -> tuple[float, float]:
    async with PosterFetcher(settings) as fetcher:
        began = time.monotonic()
        _, stall = await with_stall(fetcher.fetch(9))
        return stall, time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=2 * 1024 * 1024 - 64 * 1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    figures: dict[str, dict[str, float]] = {}
    with TmdbStandIn() as standin:
        settings = FetchSettings(tmdb_base_url=standin.base_url, page_genres=True, fetch_attempts=1)
        for kind, build in WORST_PAGES.items():
            page = build(args.bytes)
            for charset in ("utf-8", "punycode"):
                route = lambda h, p=page, c=charset: respond(h, 200, p, f"text/html; charset={c}")
                standin.routes["/movie/9"] = route
                runs = [asyncio.run(_fetch_one(settings)) for _ in range(args.rounds)]
                stall = statistics.median(r[0] for r in runs)
                wall = statistics.median(r[1] for r in runs)
                figures[f"{kind} [{charset}]"] = {
                    "stall_s": round(stall, 3),
                    "wall_s": round(wall, 3),
                }
                print(
                    f"{kind:38} {charset:9} stall {stall:6.3f} s  fetch {wall:6.3f} s", flush=True
                )
    print(json.dumps({"hostile_pages": figures, "bytes": args.bytes}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
