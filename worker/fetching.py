"""Download a batch's posters while the Kafka thread does other work.

The Kafka thread starts the downloads of batch N+1 right after polling it, then goes
on to classify and publish batch N; collecting the posters later is the only wait.
The downloads run on an asyncio thread of this process; the Kafka thread holds one future
per poster.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from poster_genres.posters import FetchStats, Poster, PosterFetcher
from poster_genres.posters.loops import EventLoopKind, new_event_loop
from poster_genres.worker.errors import WorkerError
from poster_genres.worker.jobs import Batch, Job
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.results import error_summary

log = logging.getLogger(__name__)

T = TypeVar("T")

KEEP_ALIVE_S = 5.0  # while waiting on posters, poll (partitions paused) this often


class AsyncRunner:
    """An event loop (`posters.loops`) on a daemon thread, so the Kafka thread can hand it
    coroutines."""

    def __init__(self, kind: EventLoopKind = "auto") -> None:
        self.loop = new_event_loop(kind)
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="fetch-loop", daemon=True
        )
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the loop; its future can be waited on from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result."""
        return self.submit(coro).result()

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class PosterDownloads:
    """Starts the poster downloads of a batch, and later collects them into its jobs."""

    def __init__(
        self,
        fetcher: PosterFetcher,
        runner: AsyncRunner,
        metrics: WorkerMetrics,
        keep_alive_s: float = KEEP_ALIVE_S,
    ):
        self.fetcher = fetcher
        self.runner = runner
        self.metrics = metrics
        self.keep_alive_s = keep_alive_s
        self._seen = FetchStats()

    def start(self, batch: Batch) -> None:
        """Start downloading the poster of every valid event of the batch."""
        for job in batch.jobs:
            if job.event is not None and job.error is None:
                job.fetch = self.runner.submit(self._fetch(job.event.tmdb_id))

    async def _fetch(self, tmdb_id: int) -> Poster:
        begun = time.monotonic()
        try:
            return await self.fetcher.fetch(tmdb_id)
        finally:
            self.metrics.poster_fetch_seconds.observe(time.monotonic() - begun)

    def ready(self, batch: Batch) -> bool:
        """Whether every download of the batch has ended."""
        return all(job.fetch.done() for job in batch.jobs if job.fetch is not None)

    def collect(self, batch: Batch, keep_alive: Callable[[], None]) -> None:
        """Wait for every download (calling `keep_alive` meanwhile); set posters or errors."""
        pending = [job.fetch for job in batch.jobs if job.fetch is not None]
        while pending:  # long outages must not cost this member its place in the group
            waited = concurrent.futures.wait(pending, timeout=self.keep_alive_s)
            pending = list(waited.not_done)
            if pending:
                keep_alive()
                self.observe()  # an open circuit shows while the batch waits for it
        for job in batch.jobs:
            if job.fetch is not None:
                _take_poster(job, job.fetch)
        self.observe()

    def observe(self) -> None:
        """Move the fetcher's totals since the last look into the metrics."""
        stats, seen = self.fetcher.stats(), self._seen
        self.metrics.fetch_retries.inc(stats.retries - seen.retries)
        self.metrics.circuit_wait_seconds.inc(max(0.0, stats.circuit_wait_s - seen.circuit_wait_s))
        self.metrics.rate_limit_wait_seconds.inc(
            max(0.0, stats.rate_limit_wait_s - seen.rate_limit_wait_s)
        )
        self.metrics.rate_limit_waits.inc(stats.rate_limit_waits - seen.rate_limit_waits)
        self.metrics.fetch_connections.inc(stats.connections_opened - seen.connections_opened)
        for host, is_open in stats.circuits.items():
            self.metrics.circuit_open.labels(host=host).set(int(is_open))
        self._seen = stats


def _take_poster(job: Job, fetch: concurrent.futures.Future[Poster]) -> None:
    """Move a finished download into the job: its poster, or why there is none."""
    try:
        job.poster = fetch.result()
    except WorkerError as exc:
        job.error = exc
    except Exception as exc:  # a bug in fetching must not take the batch down
        tmdb_id = job.event and job.event.tmdb_id
        log.exception("unexpected error fetching the poster of %s", tmdb_id)
        job.error = WorkerError(f"unexpected error fetching the poster: {error_summary(exc)}")
