"""Fetch processes (`FETCH_WORKERS`): answers, errors, a process killed mid-fetch, shutdown."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.tmdb import StandInMovie, TmdbStandIn
from posters import FetchFailed, FetchSettings, Poster, PosterNotFound
from tests.conftest import COLOURS, poster_bytes
from worker.fetch_pool import FetchPool, share_of


def settings_for(server: TmdbStandIn, **extra: object) -> FetchSettings:
    return FetchSettings(
        tmdb_base_url=server.base_url,
        poster_hosts=[server.host],
        backoff_base_s=0.05,
        backoff_max_s=2,
        site_rate_limit=0,
        image_rate_limit=0,
        **extra,
    )


def alive(pid: int) -> bool:
    """Running (not ended, nor a zombie waiting for its parent)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_share_of_divides_concurrency_rates_and_burst_between_processes():
    settings = FetchSettings(
        fetch_concurrency=16, site_rate_limit=20, image_rate_limit=100, rate_limit_burst=5
    )
    share = share_of(settings, 3)
    assert type(share) is FetchSettings
    assert (share.fetch_concurrency, share.rate_limit_burst) == (6, 2)
    assert share.site_rate_limit == pytest.approx(20 / 3)
    assert share.image_rate_limit == pytest.approx(100 / 3)
    assert share.tmdb_base_url == settings.tmdb_base_url
    assert share_of(FetchSettings(fetch_concurrency=1, site_rate_limit=0), 4).site_rate_limit == 0


def test_processes_return_posters_and_errors_with_their_codes_and_end_on_close():
    with TmdbStandIn() as server:
        for tmdb_id in range(1, 9):
            server.movies[tmdb_id] = StandInMovie(poster_bytes(COLOURS["Red"]))
        server.movies[9] = StandInMovie(None)
        pool = FetchPool(settings_for(server), 2).start()
        try:
            futures = {tmdb_id: pool.submit(tmdb_id) for tmdb_id in range(1, 10)}
            concurrent.futures.wait(futures.values(), timeout=60)
            pids = pool.pids
        finally:
            pool.close()
    assert len(pids) == 2
    for tmdb_id in range(1, 9):
        poster = futures[tmdb_id].result(0)
        assert isinstance(poster, Poster) and poster.tmdb_id == tmdb_id and poster.width == 60
    error = futures[9].exception(0)
    assert isinstance(error, PosterNotFound) and error.attempts == 1 and "no poster" in error.detail
    assert not any(alive(pid) for pid in pids)


def test_a_killed_process_is_replaced_and_its_posters_are_fetched_again():
    with TmdbStandIn() as server:
        for tmdb_id in range(1, 13):  # a 429 with Retry-After 1 keeps each poster in flight ~1 s
            server.movies[tmdb_id] = StandInMovie(
                poster_bytes(COLOURS["Blue"]), page_failures=[429], retry_after="1"
            )
        pool = FetchPool(settings_for(server), 2).start()
        try:
            time.sleep(0.5)  # let the processes come up
            futures = [pool.submit(tmdb_id) for tmdb_id in range(1, 13)]
            time.sleep(0.5)
            holder = next(c for c in pool._children if c.in_flight)
            victim, lost = holder.process.pid, len(holder.in_flight)
            os.kill(victim, signal.SIGKILL)
            concurrent.futures.wait(futures, timeout=60)
            pids = pool.pids
        finally:
            pool.close()
    assert lost >= 1 and victim not in pids and len(pids) == 2
    assert sorted(f.result(0).tmdb_id for f in futures) == list(range(1, 13))


def test_a_poster_whose_process_keeps_dying_ends_as_fetch_failed():
    with TmdbStandIn() as server:
        server.movies[1] = StandInMovie(
            poster_bytes(COLOURS["Green"]), page_failures=[429] * 3, retry_after="2"
        )
        pool = FetchPool(settings_for(server), 2, max_lost=2).start()
        try:
            future = pool.submit(1)
            for _ in range(2):
                time.sleep(1.5)  # started (or restarted: at most once a second) and in flight
                holder = [c for c in pool._children if c.in_flight]
                assert holder, "the poster is in no process's hands"
                os.kill(holder[0].process.pid, signal.SIGKILL)
            error = future.exception(timeout=30)
        finally:
            pool.close()
    assert isinstance(error, FetchFailed) and error.code == "fetch_failed"
    assert error.attempts == 2 and "died 2 times" in error.detail


POOL_IN_A_PROCESS = """
import time
from posters import FetchSettings
from worker.fetch_pool import FetchPool
pool = FetchPool(FetchSettings(tmdb_base_url="http://127.0.0.1:9"), 2).start()
while len(pool.pids) < 2:
    time.sleep(0.05)
print(*pool.pids, flush=True)
time.sleep(120)
"""


def test_fetch_processes_end_when_the_worker_is_killed():
    worker = subprocess.Popen(
        [sys.executable, "-c", POOL_IN_A_PROCESS], stdout=subprocess.PIPE, text=True
    )
    pids = [int(pid) for pid in worker.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    worker.kill()
    worker.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids), "a fetch process outlived a killed worker"
