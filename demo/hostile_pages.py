"""Movie pages built to be the worst case of each parse the fetcher runs on a page.

`WORST_PAGES[kind](n)` is about `n` bytes of markup made to make one step slow: the head
watch, the og:image search, the genres span and its links, the full-page fallback.
The hostile tests serve them and `bench/hostile_pages.py` times them; both measure with
`with_stall` how long the fetch loop is held: a loop that is held cannot run a timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

_END = b"</head><body></body></html>"  # the head ends: the head watch parses it
WORST_PAGES: dict[str, Callable[[int], bytes]] = {
    "a head of `<meta ` without `>`": lambda n: b"<html><head>" + b"<meta " * (n // 6) + _END,
    "a head of og:image metas without `>`": lambda n: (
        b"<html><head>" + b'<meta property="og:image" ' * (n // 26) + _END
    ),
    "an unclosed comment in the head": lambda n: b"<html><head><!--" + b"<meta " * (n // 6) + _END,
    "an unclosed quote in the head": lambda n: (
        b'<html><head><meta content="' + b"x" * n + b'"' + _END
    ),
    "an unclosed script": lambda n: b"<html><head><script>" + b"<meta>" * (n // 6) + _END,
    "a head that never ends": lambda n: b"<html><head>" + b"<meta " * (n // 6),
    "genres marks without a span": lambda n: b"</head><body>" + b'class="genres"' * (n // 14),
    "links that never close": lambda n: b'</head><body><span class="genres">' + b"<a " * (n // 3),
    "tags that never close": lambda n: b"</head><body>" + b"<" * n,
    "a page of poster images": lambda n: b'<img class="poster" src="/a.jpg">' * (n // 33),
}


async def with_stall(work: Awaitable[Any]) -> tuple[Any, float]:
    """The outcome of `work` (a value or the exception), and the loop's longest stall meanwhile."""
    stalls = [0.0]
    done = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            stalls.append(now - last - 0.01)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        outcome = await work
    except Exception as exc:  # noqa: BLE001 - the outcome is what the caller looks at
        outcome = exc
    finally:
        done.set()
        await ticker
    return outcome, max(stalls)
