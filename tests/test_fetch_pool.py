"""Fetch processes (`FETCH_WORKERS`): answers, errors, a process killed mid-fetch, shutdown,
and the processes' retries, waits and circuits in the pool's stats."""

from __future__ import annotations

import concurrent.futures
import io
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
from PIL import Image

from demo.broker import free_port
from demo.tmdb import StandInMovie, TmdbStandIn
from posters import FetchFailed, FetchSettings, FetchStats, Poster, PosterNotFound
from tests.conftest import COLOURS, poster_bytes
from worker import fetch_pool
from worker.fetch_child import serve
from worker.fetch_pool import FetchPool, combined, share_of


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


def paced_settings(server: TmdbStandIn, down: str) -> FetchSettings:
    """10 requests a second per process (of 2) with no burst to speak of, and a breaker that
    opens after 2 failures and stays open: a poster waits 0.5 s for it, then fails."""
    return FetchSettings(
        tmdb_base_url=server.base_url,
        poster_hosts=[server.host, down],
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        site_rate_limit=20,
        image_rate_limit=20,
        rate_limit_burst=2,
        breaker_threshold=2,
        breaker_cooldown_s=30,
        breaker_max_cooldown_s=30,
        max_outage_wait_s=0.5,
    )


def serve_posters(server: TmdbStandIn, ids: range, down: str | None = None) -> None:
    """Posters for `ids`; with `down`, the last one's image is on that host instead."""
    for tmdb_id in ids:
        server.movies[tmdb_id] = StandInMovie(poster_bytes(COLOURS["Red"]))
    if down is not None:
        server.movies[ids[-1]].poster_url = f"http://{down}/t/p/w500/{ids[-1]}.jpg"


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


def noise_poster(seed: int, size: tuple[int, int] = (900, 1350)) -> bytes:
    """A JPEG of random pixels: ~1.5 MB that compresses no further."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3)).save(
        buffer, "JPEG", quality=95
    )
    return buffer.getvalue()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_answers_larger_than_the_pipe_reach_the_worker_whole(loop: str):
    """An answer is bigger than the pipe's buffer holds: sending it must wait for the worker
    to read, whatever the fetch process's event loop does to the pipe (uvloop's readers put
    it in non-blocking mode, where a send would stop part-way through a message)."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    posters = {tmdb_id: noise_poster(tmdb_id) for tmdb_id in range(1, 9)}
    with TmdbStandIn() as server:
        for tmdb_id, image in posters.items():
            server.movies[tmdb_id] = StandInMovie(image)
        pool = FetchPool(settings_for(server, fetch_event_loop=loop), 2).start()
        try:
            futures = {tmdb_id: pool.submit(tmdb_id) for tmdb_id in posters}
            done, _ = concurrent.futures.wait(futures.values(), timeout=60)
        finally:
            pool.close()
    assert len(done) == len(posters), "answers were lost on the way from the fetch processes"
    assert all(len(image) > 1_000_000 for image in posters.values())
    for tmdb_id, future in futures.items():
        assert future.result(0).content == posters[tmdb_id]


def serve_garbled_once(conn: Connection, *args: object) -> None:
    """A fetch process's entry point whose first run answers its first request with bytes
    that are no message, then waits to be ended; later runs are the real one."""
    marker = Path(os.environ["GARBLE_MARKER"])
    if marker.exists():
        serve(conn, *args)  # type: ignore[arg-type]
        return
    marker.touch()
    conn.recv()
    conn.send_bytes(b"\xa5 not a message")
    time.sleep(60)


def test_a_process_that_sends_an_unreadable_answer_is_replaced_and_its_poster_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setenv("GARBLE_MARKER", str(tmp_path / "garbled"))
    monkeypatch.setattr(fetch_pool, "serve", serve_garbled_once)
    with TmdbStandIn() as server:
        serve_posters(server, range(1, 2))
        pool = FetchPool(settings_for(server), 1).start()
        try:
            future = pool.submit(1)
            poster = future.result(timeout=30)
            pids = pool.pids
        finally:
            pool.close()
    assert (tmp_path / "garbled").exists() and poster.tmdb_id == 1
    assert "sent an unreadable answer: ending it" in caplog.text
    assert "ended with exit code -9, 1 posters in flight" in caplog.text
    assert len(pids) == 1


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


def test_a_process_that_cannot_be_started_again_is_tried_again_and_no_poster_is_lost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    with TmdbStandIn() as server:
        serve_posters(server, range(1, 5))
        pool = FetchPool(settings_for(server), 1).start()
        try:
            start_again = pool._spawn
            failures = [OSError(24, "Too many open files")]

            def spawn(slot: int) -> object:
                if failures:
                    raise failures.pop()
                return start_again(slot)

            monkeypatch.setattr(pool, "_spawn", spawn)
            os.kill(pool.pids[0], signal.SIGKILL)
            futures = [pool.submit(tmdb_id) for tmdb_id in range(1, 5)]
            fetched = sorted(future.result(timeout=30).tmdb_id for future in futures)
        finally:
            pool.close()
    assert fetched == [1, 2, 3, 4] and not failures
    assert "handling the fetch processes failed; trying again in 1 s" in caplog.text
    assert "Too many open files" in caplog.text


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


def test_combined_adds_the_counters_and_a_circuit_is_open_if_open_in_any_process():
    one = FetchStats(1, {"site:443": True, "img:443": False}, 0.5, 0.25, 2, 7)
    other = FetchStats(2, {"site:443": False}, 1.0, 0.5, 3, 4)
    total = combined([one, other], hosts=["gone:443"])
    circuits = {"site:443": True, "img:443": False, "gone:443": False}
    assert total == FetchStats(3, circuits, 1.5, 0.75, 5, 11)
    assert combined([]) == FetchStats()


def test_the_processes_retries_waits_and_open_circuits_reach_the_pools_stats():
    down = f"127.0.0.1:{free_port()}"  # nothing listens there: refused, then its circuit opens
    with TmdbStandIn() as server:
        serve_posters(server, range(1, 9), down)
        pool = FetchPool(paced_settings(server, down), 2).start()
        try:
            futures = [pool.submit(tmdb_id) for tmdb_id in range(1, 9)]
            concurrent.futures.wait(futures, timeout=30)
            stats = pool.stats()
        finally:
            pool.close()
    assert all(isinstance(future.result(0), Poster) for future in futures[:-1])
    error = futures[-1].exception(0)
    assert isinstance(error, FetchFailed) and "gave up after waiting" in error.detail
    assert stats.circuits == {down: True}
    assert stats.retries >= 2 and stats.circuit_wait_s >= 0.4
    assert stats.rate_limit_waits >= 2 and stats.rate_limit_wait_s > 0


def test_a_circuit_that_opens_while_posters_wait_on_it_is_reported_before_they_end():
    down = f"127.0.0.1:{free_port()}"  # every poster's image is there: all wait, none ends
    with TmdbStandIn() as server:
        serve_posters(server, range(1, 5))
        for tmdb_id in range(1, 5):
            server.movies[tmdb_id].poster_url = f"http://{down}/t/p/w500/{tmdb_id}.jpg"
        settings = paced_settings(server, down).model_copy(update={"max_outage_wait_s": 30})
        pool = FetchPool(settings, 2).start()
        try:
            futures = [pool.submit(tmdb_id) for tmdb_id in range(1, 5)]
            wait_until(lambda: pool.stats().circuits.get(down, False), timeout=10)
            assert not any(future.done() for future in futures)
        finally:
            pool.close()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def counters(stats: FetchStats) -> tuple[float, ...]:
    return stats.retries, stats.circuit_wait_s, stats.rate_limit_wait_s, stats.rate_limit_waits


def test_a_dead_processs_counters_stay_in_the_stats_and_its_open_circuits_do_not():
    down = f"127.0.0.1:{free_port()}"
    with TmdbStandIn() as server:
        serve_posters(server, range(1, 6), down)
        serve_posters(server, range(6, 10))
        pool = FetchPool(paced_settings(server, down), 2).start()
        try:
            concurrent.futures.wait([pool.submit(i) for i in range(1, 6)], timeout=30)
            before = pool.stats()
            holder = next(c for c in pool._children if c.stats.circuits.get(down))
            os.kill(holder.process.pid, signal.SIGKILL)
            wait_until(lambda: not holder.alive)
            after_death = pool.stats()
            wait_until(lambda: len(pool.pids) == 2 and holder.process.pid not in pool.pids)
            futures = [pool.submit(i) for i in range(6, 10)]
            concurrent.futures.wait(futures, timeout=30)
            later = pool.stats()
        finally:
            pool.close()
    assert before.circuits == {down: True} and before.circuit_wait_s >= 0.4
    assert counters(after_death) == pytest.approx(counters(before))
    assert after_death.circuits == {down: False}  # forgotten with its process, still listed
    assert all(isinstance(future.result(0), Poster) for future in futures)
    assert all(a >= b for a, b in zip(counters(later), counters(after_death), strict=True))
    assert later.rate_limit_waits > after_death.rate_limit_waits
