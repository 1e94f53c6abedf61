"""Politeness: at most so many requests per second to each host, in a token bucket.

The scraped site gets a conservative rate (`site_rate_limit`), the image hosts and the
API a higher one (`image_rate_limit`); each host has its own bucket, which holds up to
`rate_limit_burst` tokens after a quiet spell. A request reserves a token and sleeps
until it is due: requests go out in the order they asked, without polling, and the
wait is neither a failure nor a try (see `Retrier`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from posters.http.urls import host_key
from posters.settings import FetchSettings


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; a reservation may run into debt."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._updated = clock()

    def reserve(self) -> float:
        """Take a token: the seconds to wait before using it (0 when one was saved up)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class HostPacer:
    """One bucket per `host:port`: the site's rate for the site, the image rate for the rest."""

    def __init__(self, settings: FetchSettings, clock: Callable[[], float] = time.monotonic):
        self.site = host_key(settings.tmdb_base_url)
        self.site_rate = settings.site_rate_limit
        self.other_rate = settings.image_rate_limit
        self.burst = settings.rate_limit_burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self.waited_s = 0.0  # in all, for metrics and tests
        self.waits = 0  # requests that had to wait for a token

    def reserve(self, url: str) -> float:
        """Seconds to wait before requesting `url` (0 when its host has no limit)."""
        host = host_key(url)
        bucket = self._buckets.get(host)
        if bucket is None:
            rate = self.site_rate if host == self.site else self.other_rate
            if rate <= 0:
                return 0.0
            bucket = self._buckets[host] = TokenBucket(rate, self.burst, self._clock)
        delay = bucket.reserve()
        self.waited_s += delay
        self.waits += delay > 0
        return delay
