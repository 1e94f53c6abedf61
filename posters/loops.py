"""The event loop poster fetching runs on: uvloop when it is installed, asyncio's otherwise.

Fetching is many small requests on one loop, and much of their CPU is the loop's own
(scheduling, sockets, timers): uvloop, on libuv in C, does that part with less Python
(docs/performance.md). `FETCH_EVENT_LOOP=asyncio` keeps asyncio's loop.
"""

from __future__ import annotations

import asyncio
from typing import Literal

EventLoopKind = Literal["auto", "uvloop", "asyncio"]


def new_event_loop(kind: EventLoopKind = "auto") -> asyncio.AbstractEventLoop:
    """A new loop of `kind`; "auto" is uvloop if it can be imported, else asyncio's."""
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError(
                    "FETCH_EVENT_LOOP=uvloop, but uvloop is not installed (pip install uvloop)"
                ) from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()
