"""Trying a request again: backoff maths, `Retry-After`, and the loop around each try.

A poster has a time budget (`fetch_deadline_s`) and each request a number of tries
(`fetch_attempts`). Transient failures are retried with exponential backoff and equal
jitter, never sooner than the server's `Retry-After`. Time spent waiting for an open
circuit extends the budget (up to `max_outage_wait_s` per poster) and failures while a
host is down do not use up the tries: an outage of the site is not the event's fault.
Waiting for a host's rate limit (`posters.policy.pacing`) is not counted either: it extends the
request's time limit and the budget by as long as it lasts.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from poster_genres.posters.errors import FetchFailed, PosterError, TransientError
from poster_genres.posters.http.urls import display_url, host_key
from poster_genres.posters.policy.breaker import CircuitBreaker, CircuitOpen
from poster_genres.posters.policy.concurrency import AdaptiveLimit, Slot
from poster_genres.posters.policy.pacing import HostPacer
from poster_genres.posters.settings import FetchSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
Pace = Callable[[str], Awaitable[None]]  # wait until `url`'s host may be requested
Attempt = Callable[[bool, Pace], Awaitable[T]]  # one try: (probe, pace) -> result


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (ASCII digits, or an HTTP date)."""
    if not value or len(value) > 64:  # an HTTP date is 29 characters
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: float | None = None,
) -> float:
    """Delay before try `attempt + 1`: exponential with equal jitter, at least `Retry-After`."""
    exponential = min(cap, base * 2 ** (attempt - 1))
    jitter = random.random() if rand is None else rand
    delay = exponential / 2 + exponential / 2 * jitter
    return max(delay, retry_after) if retry_after is not None else delay


@dataclass
class Budget:
    """Time and tries spent on one poster."""

    deadline: float
    attempts: int = 0
    waited: float = 0.0  # seconds spent waiting for open circuits


class Retrier:
    """Runs one request's tries: admitted by the breaker, bounded in number and in time.

    The concurrency limit is held only while a try is in flight, never while waiting
    for a circuit or a backoff, so waiting posters do not hold up the others; its size
    follows the observed latency when `fetch_target_rate` is set (`posters.policy.concurrency`).
    """

    def __init__(self, settings: FetchSettings, breaker: CircuitBreaker, pacer: HostPacer):
        self.settings = settings
        self.breaker = breaker
        self.pacer = pacer
        self.limit = AdaptiveLimit(settings)
        self.retries = 0  # transient failures retried, for metrics

    async def run(self, url: str, budget: Budget, attempt: Attempt[T]) -> T:
        """`attempt(probe, pace)` until it succeeds or fails for good; a `PosterError` then.

        The attempt awaits `pace(url)` before each request it sends (each redirect hop).
        """
        tries = 0
        wait_for = host_key(url)
        while True:
            probe = await self._admit(wait_for, budget)
            tries += 1
            budget.attempts += 1
            try:
                return await self._try(url, budget, attempt, probe)
            except CircuitOpen as exc:  # a redirect led to a host that is down: wait for it
                tries -= 1
                budget.attempts -= 1
                wait_for = exc.host
            except TransientError as exc:
                wait_for = exc.host or wait_for
                if self.breaker.is_open(wait_for):
                    tries -= 1  # the host is down: wait for it in `admit` rather than burn a try
                    self.retries += 1
                    continue
                await self._back_off(url, exc, tries, budget)
            except PosterError as exc:
                exc.attempts = budget.attempts
                raise

    async def _admit(self, host: str, budget: Budget) -> bool:
        """Wait while `host`'s circuit is open; whether this try is the probe."""
        max_wait = self.settings.max_outage_wait_s - budget.waited
        waited, probe = await self.breaker.admit(host, max_wait)
        budget.waited += waited
        budget.deadline += waited
        return probe

    async def _try(self, url: str, budget: Budget, attempt: Attempt[T], probe: bool) -> T:
        """One try, within the request timeout and what is left of the poster's budget."""
        async with self.limit.slot() as slot:
            left = max(0.0, budget.deadline - time.monotonic())
            limit = min(self.settings.request_timeout_s, left)
            try:
                async with asyncio.timeout(limit) as timer:
                    return await attempt(probe, partial(self._pace, budget, timer, slot))
            except TimeoutError as exc:
                raise TransientError(f"{display_url(url)} took over {limit:.1f} s") from exc

    async def _pace(self, budget: Budget, timer: asyncio.Timeout, slot: Slot, url: str) -> None:
        """Wait for a token to request `url`; the wait moves the time limits back as much."""
        delay = self.pacer.reserve(url)
        if delay > 0:
            slot.paced_s += delay
            budget.deadline += delay
            when = timer.when()
            if when is not None:
                timer.reschedule(when + delay)
            await asyncio.sleep(delay)

    async def _back_off(self, url: str, exc: TransientError, tries: int, budget: Budget) -> None:
        """Sleep before the next try, or raise `FetchFailed` if none is left or in time."""
        settings = self.settings
        delay = backoff_delay(
            tries, settings.backoff_base_s, settings.backoff_max_s, exc.retry_after
        )
        if tries >= settings.fetch_attempts or delay >= budget.deadline - time.monotonic():
            raise FetchFailed(
                f"gave up on {display_url(url)} after {tries} tries: {exc.detail}", budget.attempts
            ) from exc
        self.retries += 1
        log.debug("retrying %s in %.2f s: %s", display_url(url), delay, exc.detail)
        await asyncio.sleep(delay)
