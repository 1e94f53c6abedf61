"""The poster site goes down (refused, then 503s, then too slow) and comes back: the breaker waits it out."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from demo.broker import free_port
from demo.tmdb import StandInMovie, TmdbStandIn
from poster_genres.posters import FetchFailed, FetchSettings, Poster, PosterFetcher
from poster_genres.posters.policy.breaker import CircuitBreaker
from tests.fixtures import COLOURS, poster_bytes

IDS = list(range(1, 21))


class OutageSettings(FetchSettings):
    """FetchSettings plus the breaker fields the worker's settings will carry."""

    breaker_threshold: int = 3
    breaker_cooldown_s: float = 0.2
    breaker_max_cooldown_s: float = 1.0
    max_outage_wait_s: float = 30.0


def settings_for(port: int, **overrides: object) -> OutageSettings:
    values: dict[str, object] = {
        "tmdb_base_url": f"http://127.0.0.1:{port}",
        "poster_hosts": [f"127.0.0.1:{port}"],
        "request_timeout_s": 1.0,
        "read_timeout_s": 1.0,
        "connect_timeout_s": 1.0,
        "fetch_attempts": 3,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "fetch_deadline_s": 8.0,
    }
    values.update(overrides)
    return OutageSettings(**values)


def test_a_site_that_is_down_then_failing_then_slow_recovers_without_losing_events() -> None:
    port = free_port()
    image = poster_bytes(COLOURS["Blue"])
    mode = {"now": "503"}
    outage_hits: list[str] = []

    def page(h: BaseHTTPRequestHandler) -> None:
        if mode["now"] == "503":
            outage_hits.append("503")
            h.reply(503, b"down for maintenance", "text/plain")  # type: ignore[attr-defined]
        elif mode["now"] == "slow":
            outage_hits.append("slow")
            time.sleep(2.0)
            h.reply(503, b"too late", "text/plain")  # type: ignore[attr-defined]
        else:
            h.movie_page(int(h.path.split("/")[2].split("?")[0]), True)  # type: ignore[attr-defined]

    standin = TmdbStandIn(movies={i: StandInMovie(image) for i in IDS}, port=port)
    for i in IDS:
        standin.routes[f"/movie/{i}"] = page

    async def main() -> tuple[list[object], PosterFetcher, float]:
        async with PosterFetcher(settings_for(port)) as fetcher:
            begun = time.monotonic()
            tasks = [asyncio.ensure_future(fetcher.fetch(i)) for i in IDS]
            await asyncio.sleep(2.0)  # connection refused: nothing listens yet
            threading.Thread(target=standin.start, daemon=True).start()
            await asyncio.sleep(2.0)  # 503s
            mode["now"] = "slow"
            await asyncio.sleep(3.0)  # slower than the request timeout
            mode["now"] = "ok"
            results = await asyncio.gather(*tasks, return_exceptions=True)
            return results, fetcher, time.monotonic() - begun

    try:
        results, fetcher, took = asyncio.run(main())
    finally:
        standin.stop()
    failures = [r for r in results if not isinstance(r, Poster)]
    assert not failures, failures[:3]
    assert fetcher.breaker.opened >= 1
    # no hot loop: while the site was failing, only probes reached it, not 20 events x 3 tries per phase
    assert 1 <= len(outage_hits) <= 15, outage_hits
    assert took < 20


def test_an_outage_longer_than_the_max_wait_dead_letters_as_fetch_failed() -> None:
    port = free_port()  # nothing ever listens here
    settings = settings_for(port, max_outage_wait_s=1.5)

    async def main() -> tuple[list[object], CircuitBreaker, float]:
        async with PosterFetcher(settings) as fetcher:
            begun = time.monotonic()
            results = await asyncio.gather(*(fetcher.fetch(i) for i in IDS), return_exceptions=True)
            return results, fetcher.breaker, time.monotonic() - begun

    results, breaker, took = asyncio.run(main())
    assert all(isinstance(r, FetchFailed) for r in results), results[:3]
    details = {r.detail for r in results if isinstance(r, FetchFailed)}
    assert any("gave up after waiting" in d for d in details), details
    assert all(r.code == "fetch_failed" for r in results if isinstance(r, FetchFailed))
    assert 1.0 <= took < 6.0, f"took {took:.1f} s"
    assert breaker.probes <= 10, "probes came too often"


def test_the_breaker_opens_at_the_threshold_probes_once_and_closes_on_an_answer() -> None:
    clock = {"t": 0.0}
    breaker = CircuitBreaker(
        threshold=3, cooldown_s=1.0, max_cooldown_s=4.0, clock=lambda: clock["t"]
    )

    async def scenario() -> None:
        for _ in range(2):
            breaker.failure("h:80", "refused")
        assert not breaker.is_open("h:80")
        breaker.failure("h:80", "refused")
        assert breaker.is_open("h:80")
        clock["t"] = 1.0
        waited, probe = await breaker.admit("h:80", 10)
        assert probe and waited == 0.0
        breaker.failure("h:80", "refused", probe=True)  # the probe failed: the cooldown doubles
        clock["t"] = 2.5
        waiter = asyncio.ensure_future(breaker.admit("h:80", 10))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        clock["t"] = 3.0
        _, probe = await waiter
        assert probe
        breaker.success("h:80")
        assert not breaker.is_open("h:80")
        assert await breaker.admit("h:80", 10) == (0.0, False)
        # success resets the count
        breaker.failure("h:80", "refused")
        breaker.failure("h:80", "refused")
        breaker.success("h:80")
        breaker.failure("h:80", "refused")
        assert not breaker.is_open("h:80")

    asyncio.run(scenario())
    assert breaker.opened == 1 and breaker.probes == 2
    assert breaker.states() == {"h:80": False}  # for the worker's circuit gauge
    assert breaker.waited_s == pytest.approx(0.5)  # the waiter, from 2.5 to 3.0
