"""`FETCH_WORKERS` fetch processes, so poster fetching is not held to one core by the GIL.

The Kafka thread hands TMDB ids over and gets `concurrent.futures.Future`s back, as with
the in-process fetcher; a dispatcher thread reads the answers. Each process has its own
`PosterFetcher` (SSRF guard, allowlist, deadlines, retries, circuit breaker) and its share
of the limits: `FETCH_CONCURRENCY`, the rate limits and their burst are divided by the
number of processes, so the site sees what one process would send it. A circuit breaker
is per process: each opens on its own failures and probes on its own. For the metrics the
processes' totals are added up, and a host's circuit counts as open while it is open in any
of them (`FetchPool.stats`).

A process that dies is started again; the posters it was fetching are asked of another
process, and a poster whose fetches died `FETCH_ATTEMPTS` times ends as `fetch_failed`,
so no event is lost and none that kills its fetcher loops for ever.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import math
import multiprocessing
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from posters import FetchFailed, Poster
from posters.client import FetchStats
from posters.settings import FetchSettings
from worker.fetch_child import rebuild_error, serve

log = logging.getLogger(__name__)

RESTART_MIN_S = 1.0  # a process that keeps dying is started again at most this often
CLOSE_TIMEOUT_S = 10.0


def share_of(settings: FetchSettings, workers: int) -> FetchSettings:
    """One process's settings: concurrency, target rate, rate limits and burst, divided."""
    fields = {name: getattr(settings, name) for name in FetchSettings.model_fields}
    fields.update(
        fetch_concurrency=max(1, math.ceil(settings.fetch_concurrency / workers)),
        fetch_concurrency_min=max(1, math.ceil(settings.fetch_concurrency_min / workers)),
        fetch_target_rate=settings.fetch_target_rate / workers,
        site_rate_limit=settings.site_rate_limit / workers,
        image_rate_limit=settings.image_rate_limit / workers,
        rate_limit_burst=max(1, math.ceil(settings.rate_limit_burst / workers)),
    )
    return FetchSettings.model_construct(**fields)  # plain FetchSettings: cheap to unpickle


def combined(parts: Sequence[FetchStats], hosts: Iterable[str] = ()) -> FetchStats:
    """The sum of several fetchers' totals; a host's circuit is open if it is open in any.

    Every host in `hosts` is listed (closed unless open in a part), so a circuit that
    closed with the process that had it open still reports closed.
    """
    circuits = dict.fromkeys(hosts, False)
    for part in parts:
        for host, is_open in part.circuits.items():
            circuits[host] = circuits.get(host, False) or is_open
    return FetchStats(
        retries=sum(part.retries for part in parts),
        circuits=circuits,
        circuit_wait_s=sum(part.circuit_wait_s for part in parts),
        rate_limit_wait_s=sum(part.rate_limit_wait_s for part in parts),
        rate_limit_waits=sum(part.rate_limit_waits for part in parts),
        connections_opened=sum(part.connections_opened for part in parts),
    )


@dataclass
class _Request:
    """One poster asked for, and how many fetch processes died while fetching it."""

    tmdb_id: int
    future: concurrent.futures.Future[Poster] = field(default_factory=concurrent.futures.Future)
    lost: int = 0

    def lost_with_process(self, max_lost: int) -> bool:
        """Count the death of the process that held it: True to ask again, else it failed."""
        self.lost += 1
        if self.lost < max_lost:
            return True
        self.future.set_exception(
            FetchFailed(
                f"the fetch process died {self.lost} times while fetching the poster "
                f"of movie {self.tmdb_id}",
                self.lost,
            )
        )
        return False


@dataclass
class _Child:
    """A fetch process, its end of the pipe, and the requests it holds."""

    slot: int
    process: BaseProcess
    conn: Connection
    started: float
    in_flight: dict[int, _Request] = field(default_factory=dict)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    stats: FetchStats = field(default_factory=FetchStats)  # as of its latest answer
    alive: bool = True
    broken: bool = False  # it sent a message that could not be read: it is being ended

    def wait_or_kill(self, timeout: float) -> None:
        """Wait for the process to end; kill it after `timeout` seconds."""
        self.process.join(timeout=max(0.0, timeout))
        if self.process.is_alive():
            log.warning("fetch process %d did not finish: killing it", self.slot)
            self.process.kill()
            self.process.join(timeout=5)


def restart_due(children: Sequence[_Child]) -> float | None:
    """Seconds until a dead process may be started again (None: none is dead)."""
    dead = [c.started + RESTART_MIN_S - time.monotonic() for c in children if not c.alive]
    return max(0.0, min(dead)) if dead else None


class FetchPool:
    """Fetch processes behind a `submit(tmdb_id) -> Future[Poster]`; use `start` and `close`."""

    def __init__(
        self,
        settings: FetchSettings,
        workers: int,
        log_level: str = "INFO",
        log_format: str = "plain",
        max_lost: int | None = None,
    ):
        self.workers = workers
        self._args = (share_of(settings, workers), log_level, log_format)
        self._max_lost = max_lost or settings.fetch_attempts
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._children: list[_Child] = []
        self._backlog: list[tuple[int, _Request]] = []  # waiting for any process to be up
        self._stats_of_dead = FetchStats()  # counters of ended processes; no circuits
        self._hosts: set[str] = set()  # every host a process reported a circuit for
        self._closing = False
        self._wake_recv, self._wake_send = multiprocessing.Pipe(duplex=False)
        self._dispatcher = threading.Thread(target=self._dispatch, name="fetch-pool", daemon=True)

    def start(self) -> FetchPool:
        """Start the fetch processes and the thread that reads their answers."""
        self._children = [self._spawn(slot) for slot in range(self.workers)]
        self._dispatcher.start()
        log.info("fetching posters in %d processes", self.workers)
        return self

    @property
    def retries(self) -> int:
        """Transient failures retried so far in every process, for metrics."""
        return self.stats().retries

    def stats(self) -> FetchStats:
        """Totals for the metrics, over every process so far (ended ones included, so no
        counter goes back); circuits as the live processes last reported them: a host's is
        open if it is open in any, and what an ended process had open is forgotten."""
        with self._lock:
            parts = [self._stats_of_dead, *(child.stats for child in self._children)]
            hosts = sorted(self._hosts)
        return combined(parts, hosts)

    @property
    def pids(self) -> list[int]:
        """Process ids of the fetch processes (tests)."""
        return [child.process.pid for child in self._children if child.process.pid]

    def submit(self, tmdb_id: int) -> concurrent.futures.Future[Poster]:
        """Ask a fetch process for the poster of `tmdb_id`."""
        request = _Request(tmdb_id)
        self._assign(next(self._ids), request)
        return request.future

    def _assign(self, request_id: int, request: _Request) -> None:
        """Hand a request to the live process with the fewest in flight (or the backlog)."""
        with self._lock:
            live = [child for child in self._children if child.alive]
            if not live:
                self._backlog.append((request_id, request))
                return
            child = min(live, key=lambda c: len(c.in_flight))
            child.in_flight[request_id] = request
        self._send(child, (request_id, request.tmdb_id))

    def _send(self, child: _Child, message: tuple[int, int] | None) -> None:
        """Send a message; a dead process's requests are handed on by the dispatcher."""
        try:
            with child.send_lock:
                child.conn.send(message)
        except OSError:
            pass

    # -- the dispatcher thread -------------------------------------------------------------

    def _dispatch(self) -> None:
        """Read answers and notice deaths until closed; an error is logged, then tried again."""
        while not self._closing:
            try:
                self._dispatch_once()
            except Exception:  # e.g. a process that cannot be started: its posters must not
                log.exception(  # wait for ever on a dispatcher that is gone
                    "fetch pool: handling the fetch processes failed; trying again in %.0f s",
                    RESTART_MIN_S,
                )
                time.sleep(RESTART_MIN_S)

    def _dispatch_once(self) -> None:
        """Wait for answers, deaths or a restart that is due, and handle them."""
        with self._lock:
            children = list(self._children)
        ready = wait(
            [
                self._wake_recv,
                *(c.conn for c in children if c.alive),
                *(c.process.sentinel for c in children if c.alive),
            ],
            timeout=restart_due(children),
        )
        for child in children:
            if child.alive and child.conn in ready:
                self._receive(child)
            if child.alive and child.process.sentinel in ready and not self._closing:
                self._receive(child)  # answers sent before it died count
                self._died(child)
        if not self._closing:
            self._restart_dead(children)

    def _receive(self, child: _Child) -> None:
        """Take every answer waiting on a process's pipe; end a process whose pipe is garbled."""
        if child.broken:
            return
        try:
            while child.conn.poll():
                request_id, poster, error, stats = child.conn.recv()
                with self._lock:
                    request = child.in_flight.pop(request_id, None)
                    child.stats = stats
                    self._hosts.update(stats.circuits)
                if request is None:  # a report of the totals alone, or a lost request
                    continue
                if error is not None:
                    request.future.set_exception(rebuild_error(error))
                else:
                    request.future.set_result(poster)
        except (EOFError, OSError):
            pass
        except Exception:  # an unreadable message: nothing after it on this pipe can be trusted
            log.exception(
                "fetch process %d (pid %s) sent an unreadable answer: ending it",
                child.slot,
                child.process.pid,
            )
            child.broken = True
            child.process.kill()  # its death hands its posters on (`_died`)

    def _died(self, child: _Child) -> None:
        """A process ended: its requests go to another one, or fail if they died too often."""
        child.process.join(timeout=1)
        with self._lock:
            child.alive = False
            lost, child.in_flight = list(child.in_flight.items()), {}
            self._stats_of_dead = combined([self._stats_of_dead, replace(child.stats, circuits={})])
            child.stats = FetchStats()
        log.error(
            "fetch process %d (pid %s) ended with exit code %s, %d posters in flight: "
            "starting another",
            child.slot,
            child.process.pid,
            child.process.exitcode,
            len(lost),
        )
        child.conn.close()
        for request_id, request in lost:
            if request.lost_with_process(self._max_lost):
                self._assign(request_id, request)

    def _restart_dead(self, children: list[_Child]) -> None:
        """Start again each dead process whose last start is long enough ago; give it work."""
        for child in children:
            if child.alive or time.monotonic() - child.started < RESTART_MIN_S:
                continue
            fresh = self._spawn(child.slot)
            with self._lock:
                self._children[child.slot] = fresh
                backlog, self._backlog = self._backlog, []
            for request_id, request in backlog:
                self._assign(request_id, request)

    def _spawn(self, slot: int) -> _Child:
        """Start one fetch process."""
        mine, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(theirs, *self._args), name=f"fetch-{slot}", daemon=True
        )
        process.start()
        theirs.close()
        return _Child(slot, process, mine, time.monotonic())

    # -- shutdown ----------------------------------------------------------------------

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Tell every process to finish, wait for it (kill it after `timeout`), fail leftovers."""
        self._closing = True
        self._wake_send.send(None)
        self._dispatcher.join(timeout=5)
        for child in self._children:
            self._send(child, None)
        deadline = time.monotonic() + timeout
        for child in self._children:
            child.wait_or_kill(deadline - time.monotonic())
        for child in self._children:
            for request in child.in_flight.values():
                request.future.set_exception(FetchFailed("the worker stopped", request.lost))
            child.conn.close()
        for _, request in self._backlog:
            request.future.set_exception(FetchFailed("the worker stopped", request.lost))
