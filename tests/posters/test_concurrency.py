"""Requests in flight: the formula, the rate-limit cap, and the adaptive limit (fake clock)."""

from __future__ import annotations

import asyncio
import math

import pytest

from poster_genres.posters import FetchSettings
from poster_genres.posters.policy.concurrency import AdaptiveLimit, needed_in_flight, reachable_rate


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def settings(**fields: object) -> FetchSettings:
    defaults: dict[str, object] = {"site_rate_limit": 0, "image_rate_limit": 0}
    return FetchSettings(**{**defaults, **fields})


def test_in_flight_is_rate_times_two_requests_times_latency_within_the_bounds():
    assert needed_in_flight(10, 0.3, 1, 64) == 6
    assert needed_in_flight(10, 0.31, 1, 64) == 7  # rounded up
    assert needed_in_flight(75, 0.15, 4, 16) == 16  # 22.5 wanted, capped
    assert needed_in_flight(5, 0.01, 4, 16) == 4  # 0.1 wanted, at least the minimum
    assert needed_in_flight(math.inf, 0.1, 4, 16) == 16


def test_the_rate_limits_cap_the_rate_worth_fetching_for():
    assert reachable_rate(settings(site_rate_limit=20, image_rate_limit=100)) == 10
    assert reachable_rate(settings(site_rate_limit=0, image_rate_limit=6)) == 6
    assert reachable_rate(settings()) == math.inf
    api = settings(site_rate_limit=20, image_rate_limit=100, tmdb_api_key="k")
    assert reachable_rate(api) == 100  # the site's pages are not requested


def test_the_limit_follows_the_latency_ewma_and_stays_fixed_without_a_target():
    limit = AdaptiveLimit(
        settings(fetch_target_rate=50, fetch_concurrency=32, fetch_concurrency_min=2)
    )
    assert limit.adaptive and limit.limit == 32  # nothing known yet: the cap
    limit.observe(0.1)
    assert limit.limit == 10  # 50 x 2 x 0.1
    for _ in range(60):
        limit.observe(0.25)
    assert limit.latency_s == pytest.approx(0.25, abs=0.001) and limit.limit == 25
    limit.observe(5.0)  # one slow try moves it a tenth of the way
    assert limit.latency_s == pytest.approx(0.725, abs=0.01) and limit.limit == 32
    for _ in range(100):
        limit.observe(0.001)
    assert limit.limit == 2
    fixed = AdaptiveLimit(settings(fetch_concurrency=8, fetch_target_rate=0))
    fixed.observe(0.01)
    assert not fixed.adaptive and fixed.limit == 8


def test_the_site_rate_limit_bounds_the_target():
    limit = AdaptiveLimit(settings(fetch_target_rate=100, site_rate_limit=20, fetch_concurrency=64))
    assert limit.rate == 10
    limit.observe(0.3)
    assert limit.limit == 6  # 10 posters/s x 2 x 0.3 s, not 100 x 2 x 0.3


def test_a_slot_reports_its_latency_without_the_rate_limit_wait():
    clock = FakeClock()
    limit = AdaptiveLimit(settings(fetch_target_rate=10, fetch_concurrency=64), clock=clock)

    async def one_try(paced: float, took: float) -> None:
        async with limit.slot() as slot:
            slot.paced_s += paced
            clock.now += took

    asyncio.run(one_try(paced=2.0, took=2.4))
    assert limit.latency_s == pytest.approx(0.4) and limit.limit == 8
    assert limit.in_use == 0

    async def failing() -> None:
        async with limit.slot():
            clock.now += 9
            raise RuntimeError("no answer")

    with pytest.raises(RuntimeError):
        asyncio.run(failing())
    assert limit.latency_s == pytest.approx(0.4) and limit.in_use == 0  # failures not counted


def test_no_more_than_the_limit_run_at_once_and_a_raised_limit_lets_waiters_in():
    limit = AdaptiveLimit(settings(fetch_concurrency=3))
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with limit.slot():
            peak = max(peak, limit.in_use)
            await asyncio.sleep(0.01)

    async def run() -> tuple[int, int]:
        await asyncio.gather(*(one() for _ in range(20)))
        first_peak = peak
        limit.limit = 1
        blockers = [asyncio.create_task(one()) for _ in range(5)]
        await asyncio.sleep(0)
        running = limit.in_use
        limit.limit = 5  # the waiters get their places as the running one gives its back
        await asyncio.gather(*blockers)
        return first_peak, running

    first_peak, running = asyncio.run(run())
    assert first_peak == 3 and running == 1 and limit.in_use == 0


def test_a_cancelled_waiter_gives_its_place_back():
    limit = AdaptiveLimit(settings(fetch_concurrency=1))

    async def run() -> int:
        async def hold() -> None:
            async with limit.slot():
                await asyncio.sleep(0.05)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiter = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiter.cancel()
        await holder
        await asyncio.gather(waiter, return_exceptions=True)
        await asyncio.wait_for(hold(), 1)  # the place is free again
        return limit.in_use

    assert asyncio.run(run()) == 0


def test_by_default_the_limit_follows_the_latency_up_to_64():
    limit = AdaptiveLimit(settings(site_rate_limit=0, image_rate_limit=0))
    assert limit.adaptive
    for _ in range(200):
        limit.observe(0.15)  # a site 150 ms away: 100 posters/s need 30 in flight
    assert limit.limit == 30
    for _ in range(200):
        limit.observe(1.0)
    assert limit.limit == 64  # capped
