"""Politeness: at most so many requests per second to each host, in a token bucket.

The scraped site gets a conservative rate (`site_rate_limit`), the image hosts and the
API a higher one (`image_rate_limit`); each host has its own bucket, which holds up to
`rate_limit_burst` tokens after a quiet spell. A request reserves a token and sleeps
until it is due: requests go out in the order they asked, without polling, and the
wait is neither a failure nor a try (see `Retrier`).

The limits are what a whole consumer group may send: a worker sets its `share` of them
(`worker.budget`) whenever the group re-divides its partitions, and every bucket's rate
and burst follow. Alone (the trainer, a test) the share is 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from poster_genres.posters.http.urls import host_key
from poster_genres.posters.settings import FetchSettings


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; a reservation may run into debt."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()

    def reserve(self) -> float:
        """Take a token: the seconds to wait before using it (0 when one was saved up)."""
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def set_rate(self, rate: float, burst: float) -> None:
        """From now on refill at `rate`, save up at most `burst`; a debt is repaid at `rate`."""
        self._refill()
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = min(self._tokens, self.burst)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now


class HostPacer:
    """One bucket per `host:port`: the site's rate for the site, the image rate for the rest.

    Each rate and the burst are the group's, times this process's `share` (0 < share <= 1).
    Not thread-safe: `set_share` runs on the loop that calls `reserve`.
    """

    def __init__(self, settings: FetchSettings, clock: Callable[[], float] = time.monotonic):
        self.site = host_key(settings.tmdb_base_url)
        self.site_rate = settings.site_rate_limit
        self.other_rate = settings.image_rate_limit
        self.burst = settings.rate_limit_burst
        self.share = 1.0
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self.waited_s = 0.0  # in all, for metrics and tests
        self.waits = 0  # requests that had to wait for a token

    def set_share(self, share: float) -> None:
        """Pace at `share` of the limits from now on, in every bucket made or to be made."""
        if not 0 < share <= 1:
            raise ValueError(f"a share of the rate limits is in (0, 1], not {share}")
        self.share = share
        for host, bucket in self._buckets.items():
            bucket.set_rate(self._rate(host), self.burst * share)

    def rate(self, url: str) -> float:
        """Requests a second this process may send to `url`'s host now (0: no limit)."""
        return self._rate(host_key(url))

    def reserve(self, url: str) -> float:
        """Seconds to wait before requesting `url` (0 when its host has no limit)."""
        host = host_key(url)
        bucket = self._buckets.get(host)
        if bucket is None:
            rate = self._rate(host)
            if rate <= 0:
                return 0.0
            bucket = TokenBucket(rate, self.burst * self.share, self._clock)
            self._buckets[host] = bucket
        delay = bucket.reserve()
        self.waited_s += delay
        self.waits += delay > 0
        return delay

    def _rate(self, host: str) -> float:
        return (self.site_rate if host == self.site else self.other_rate) * self.share
