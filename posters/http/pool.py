"""At most so many connections; idle ones kept per origin and reused newest first.

A steady load keeps a steady set of connections. A request that finds the pool full
waits for one (the pool timeout bounds the whole wait); an idle connection past its
keep-alive, or closed by its server, is never handed out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable

import httpx

from poster_genres.posters.http.connections import Connection

Origin = tuple[str, str, int]  # scheme, host, port
Connect = Callable[[Origin, "float | None"], Awaitable[Connection]]
SWEEP_INTERVAL_S = 1.0  # how often every idle connection is asked whether it has expired


class Pool:
    """Connections made by `connect`, at most `max_connections`, idle ones kept `expiry` s."""

    def __init__(self, connect: Connect, max_connections: int, expiry: float):
        self._connect = connect
        self._max = max_connections
        self._expiry = expiry
        self._idle: dict[Origin, list[Connection]] = {}
        self._idle_count = 0
        self._open: set[Connection] = set()  # idle or busy
        self._opening = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._next_sweep = 0.0
        self._closed = False

    async def acquire(
        self, origin: Origin, connect_timeout: float | None, pool_timeout: float | None
    ) -> Connection:
        """An idle connection to `origin`, else a new one, else wait for one to be released."""
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        while True:
            if self._closed:
                raise httpx.ConnectError("the fetcher is closed")
            connection = self._idle_to(origin)
            if connection is not None:
                return connection
            if self._size >= self._max and self._idle_count:
                self._drop_oldest_idle()
            if self._size < self._max:
                return await self._new(origin, connect_timeout)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await self._wait(left)

    def release(self, connection: Connection, keep: bool) -> None:
        """A request is done with `connection`: keep it idle, or close it."""
        if keep and not self._closed and connection in self._open:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.origin, []).append(connection)
            self._idle_count += 1
        else:
            self._close(connection)
        self._wake()

    def close(self) -> None:
        """Close every connection, idle or busy, at once."""
        self._closed = True
        for connection in list(self._open):
            self._close(connection)
        self._idle.clear()
        self._idle_count = 0
        while self._waiting:
            self._wake()

    @property
    def _size(self) -> int:
        return len(self._open) + self._opening

    async def _new(self, origin: Origin, timeout: float | None) -> Connection:
        self._opening += 1
        try:
            connection = await self._connect(origin, timeout)
        except BaseException:
            self._wake()
            raise
        finally:
            self._opening -= 1
        if self._closed:  # closed while connecting
            connection.close()
            raise httpx.ConnectError("the fetcher is closed")
        self._open.add(connection)
        return connection

    def _idle_to(self, origin: Origin) -> Connection | None:
        """The newest usable idle connection to `origin`; unusable ones met are closed."""
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL_S
            self._sweep(now)
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if not idle:  # no empty lists: `_drop_oldest_idle` looks at each one's first
                del self._idle[origin]
            if connection.usable(now, self._expiry):
                return connection
            self._close(connection)
        return None

    def _sweep(self, now: float) -> None:
        """Close idle connections past their keep-alive or closed by the server."""
        for origin, idle in list(self._idle.items()):
            keep = [c for c in idle if c.usable(now, self._expiry)]
            for connection in idle:
                if connection not in keep:
                    self._idle_count -= 1
                    self._close(connection)
            if keep:
                self._idle[origin] = keep
            else:
                del self._idle[origin]

    def _drop_oldest_idle(self) -> None:
        """Close the idle connection that has waited longest, to make room for another origin."""
        origin, idle = min(self._idle.items(), key=lambda item: item[1][0].idle_since)
        connection = idle.pop(0)
        if not idle:
            del self._idle[origin]
        self._idle_count -= 1
        self._close(connection)

    async def _wait(self, timeout: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._wake()  # woken, but leaving: the next one gets the turn
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("no connection was free in time") from None
            raise

    def _wake(self) -> None:
        """Let the longest-waiting request look for a connection again."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close(self, connection: Connection) -> None:
        self._open.discard(connection)
        connection.close()
