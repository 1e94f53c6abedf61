"""How many requests to keep in flight: enough for the real round trip, no more.

Little's law: requests in flight = requests a second x seconds per request. To fetch
`rate` posters a second, each of them `REQUESTS_PER_POSTER` tries (the page, its slug
redirect followed inside the same try, then the image; or the API answer, then the
image) of `latency` seconds each, needs

    in flight = ceil(rate x REQUESTS_PER_POSTER x latency)

and more only queue at the hosts' rate limits (`posters.policy.pacing`): the site's bucket
lets through `SITE_RATE_LIMIT / SITE_REQUESTS_PER_POSTER` posters a second, the image
host's `IMAGE_RATE_LIMIT`, so the rate is first capped by those.

With `FETCH_TARGET_RATE` set, `AdaptiveLimit` follows the observed latency (an EWMA of
each successful try's time, waiting for a rate-limit token left out) and sizes the limit
by the formula within [`FETCH_CONCURRENCY_MIN`, `FETCH_CONCURRENCY`]; otherwise the limit
is `FETCH_CONCURRENCY`, fixed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from poster_genres.posters.settings import FetchSettings

REQUESTS_PER_POSTER = 2  # tries per poster: page (or API answer), then image
SITE_REQUESTS_PER_POSTER = 2  # the slug redirect and the page, each paced
EWMA_ALPHA = 0.1  # weight of the newest latency: about the last 10-20 tries count


def reachable_rate(settings: FetchSettings) -> float:
    """Posters a second the rate limits let through (`inf` when no limit applies)."""
    caps = [math.inf]
    if settings.image_rate_limit > 0:
        caps.append(settings.image_rate_limit)  # one image (and one API answer) per poster
    if settings.site_rate_limit > 0 and settings.tmdb_api_key is None:
        caps.append(settings.site_rate_limit / SITE_REQUESTS_PER_POSTER)
    return min(caps)


def needed_in_flight(rate: float, latency_s: float, low: int, high: int) -> int:
    """Requests to keep in flight for `rate` posters a second at `latency_s` a try."""
    if not math.isfinite(rate):
        return high
    wanted = math.ceil(rate * REQUESTS_PER_POSTER * latency_s - 1e-9)  # 8.0000001 is 8
    return max(low, min(high, wanted))


@dataclass
class Slot:
    """One request's hold on the limit; time spent waiting for a rate-limit token is noted."""

    started: float
    paced_s: float = 0.0


class AdaptiveLimit:
    """A concurrency limit that can change while requests hold it (asyncio, one loop)."""

    def __init__(self, settings: FetchSettings, clock: Callable[[], float] = time.monotonic):
        self.high = settings.fetch_concurrency
        self.low = min(settings.fetch_concurrency_min, self.high)
        target = settings.fetch_target_rate
        self.rate = min(target, reachable_rate(settings)) if target > 0 else 0.0
        self.limit = self.high  # until a latency is known (and for good when fixed)
        self.latency_s: float | None = None
        self.in_use = 0
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def adaptive(self) -> bool:
        """True when the limit follows the latency (`FETCH_TARGET_RATE` set)."""
        return self.rate > 0

    def observe(self, latency_s: float) -> None:
        """Take one try's latency into the EWMA and size the limit by it."""
        if self.latency_s is None:
            self.latency_s = latency_s
        else:
            self.latency_s += EWMA_ALPHA * (latency_s - self.latency_s)
        if self.adaptive:
            self.limit = needed_in_flight(self.rate, self.latency_s, self.low, self.high)
            self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Hold one place while a try runs; a try that succeeds reports its latency."""
        await self._acquire()
        slot = Slot(self._clock())
        try:
            yield slot
        finally:
            self.in_use -= 1
            self._wake()
        self.observe(max(0.0, self._clock() - slot.started - slot.paced_s))

    async def _acquire(self) -> None:
        """Wait for a place (first come, first served)."""
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_use -= 1  # granted as we were cancelled: give it back
                self._wake()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _wake(self) -> None:
        """Grant places to waiters while the limit allows."""
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)
