"""The inside of a fetch process: its own event loop and `PosterFetcher`, fed over a pipe.

Fetching costs a few CPU milliseconds per poster in Python (HTTP, page parsing, image
header checks), all under one GIL; with `FETCH_WORKERS` above 1 that work runs in
processes of its own, so it can use other cores than the Kafka thread and TensorFlow.
This module imports the `posters` package only (never TensorFlow), so a spawned fetch
process starts fast and stays small. The worker's side is `worker.fetch_pool`.

Protocol, one pickled message each way per poster:
    worker -> child   (request_id, tmdb_id), or None: finish
    child -> worker   (request_id, Poster | None, error | None, FetchStats so far)
where an error is (`CodedError` subclass, detail, attempts), and the `FetchStats` are the
child's totals (retries, circuits, circuit and rate-limit waits) when it answered. Between
answers, when its totals changed, the child also sends (None, None, None, FetchStats) at most
every `STATS_EVERY_S`: a host that is down altogether opens its circuit while no poster
ends, and the worker's metrics should show it then, not when the waiting posters give up.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

from posters import PosterFetcher
from posters.errors import CodedError, PosterError
from posters.loops import new_event_loop
from posters.settings import FetchSettings

log = logging.getLogger(__name__)

ErrorInfo = tuple[type[CodedError], str, int]
STATS_EVERY_S = 1.0  # the longest a change in a fetch process's totals goes unreported


def serve(conn: Connection, settings: FetchSettings, log_level: str, log_format: str) -> None:
    """A fetch process's entry point: fetch what the worker asks until it says stop or goes."""
    # The worker decides when its fetch processes end (after the batch in hand): a signal
    # to the whole process group (Ctrl-C) must not end them first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from common.logs import configure_logging

    configure_logging(log_level, log_format)
    with asyncio.Runner(loop_factory=lambda: new_event_loop(settings.fetch_event_loop)) as runner:
        runner.run(_serve(conn, settings))


async def _serve(conn: Connection, settings: FetchSettings) -> None:
    """Read requests as they come and fetch them concurrently, until None or end of file."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    async with PosterFetcher(settings) as fetcher:

        def start(message: tuple[int, int]) -> None:
            task = loop.create_task(_fetch_one(fetcher, conn, *message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        threading.Thread(
            target=_read_requests,
            args=(conn, loop, start, finished.set),
            name="fetch-requests",
            daemon=True,
        ).start()
        reporter = loop.create_task(_report_stats(fetcher, conn))
        await finished.wait()
        for task in [reporter, *tasks]:
            task.cancel()
        await asyncio.gather(reporter, *tasks, return_exceptions=True)


def _read_requests(
    conn: Connection,
    loop: asyncio.AbstractEventLoop,
    start: Callable[[tuple[int, int]], None],
    finish: Callable[[], None],
) -> None:
    """Hand each request to the loop, then `finish` on None or when the worker is gone.

    The pipe is read on this thread, not by the event loop, so that it stays in blocking
    mode: uvloop's readers make a file descriptor non-blocking, and on a non-blocking pipe
    an answer larger than its buffer (a poster) would be sent only in part.
    """
    try:
        while (message := conn.recv()) is not None:
            loop.call_soon_threadsafe(start, message)
    except (EOFError, OSError):  # the worker is gone: so are we
        pass
    try:
        loop.call_soon_threadsafe(finish)
    except RuntimeError:  # the loop has ended already
        pass


async def _fetch_one(
    fetcher: PosterFetcher, conn: Connection, request_id: int, tmdb_id: int
) -> None:
    """Fetch one poster and send back the poster or why there is none."""
    error: ErrorInfo | None = None
    poster = None
    try:
        poster = await fetcher.fetch(tmdb_id)
    except PosterError as exc:
        error = (type(exc), exc.detail, exc.attempts)
    except Exception as exc:  # a bug in fetching must not take the process down
        log.exception("unexpected error fetching the poster of %s", tmdb_id)
        detail = f"unexpected error fetching the poster: {type(exc).__name__}: {str(exc)[:300]}"
        error = (CodedError, detail, 0)
    try:
        conn.send((request_id, poster, error, fetcher.stats()))
    except OSError:  # the worker is gone
        pass


async def _report_stats(fetcher: PosterFetcher, conn: Connection) -> None:
    """Send the fetcher's totals when they changed, at most every `STATS_EVERY_S`.

    Sends happen on this loop's thread only, as the answers' do, so they never interleave.
    """
    last = fetcher.stats()
    while True:
        await asyncio.sleep(STATS_EVERY_S)
        stats = fetcher.stats()
        if stats == last:
            continue
        last = stats
        try:
            conn.send((None, None, None, stats))
        except OSError:  # the worker is gone
            return


def rebuild_error(info: ErrorInfo) -> CodedError:
    """The worker's copy of an error sent by a fetch process (code, detail and attempts kept)."""
    cls, detail, attempts = info
    error = cls.__new__(cls)
    CodedError.__init__(error, detail, attempts)
    return error
