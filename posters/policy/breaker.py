"""Per-host circuit breaker: a failing site makes requests wait instead of burning retries.

Without it, an outage of the site would use up every event's tries within seconds and
drain the input into the dead-letter topic. See docs/reliability.md for the policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from poster_genres.posters.errors import FetchFailed

log = logging.getLogger(__name__)


class CircuitOpen(Exception):
    """A redirect hop reached a host whose circuit is open; the retry loop waits for it."""

    def __init__(self, host: str):
        super().__init__(host)
        self.host = host


@dataclass
class _Circuit:
    """The health of one host as the breaker sees it."""

    failures: int = 0  # transient failures in a row
    open_since: float | None = None  # when the circuit opened; None while closed
    retry_at: float = 0.0  # when the next probe may go out
    cooldown: float = 0.0
    probing: bool = False
    last_error: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class CircuitBreaker:
    """Per-host breaker: after `threshold` failures in a row, requests wait for a probe.

    Closed: requests go out; each transient failure (connection error, timeout, 5xx)
    adds one, any other answer resets the count. Open: requests wait in `admit`; one of
    them goes out as the probe when the cooldown ends (`cooldown_s`, doubling to
    `max_cooldown_s`).
    A probe that gets an answer closes the circuit and wakes everyone; one that fails
    doubles the cooldown. No one waits longer than `max_wait_s` in total.
    """

    def __init__(
        self,
        threshold: int,
        cooldown_s: float,
        max_cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.threshold = max(1, threshold)
        self.cooldown_s = max(0.01, cooldown_s)
        self.max_cooldown_s = max(self.cooldown_s, max_cooldown_s)
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self.opened = 0  # times a circuit opened, for metrics and tests
        self.probes = 0
        self.waited_s = 0.0  # seconds requests spent waiting on open circuits, in all
        self._seen: set[str] = set()  # hosts that ever failed, so a closed circuit reports 0

    def states(self) -> dict[str, bool]:
        """Whether each host that ever failed has its circuit open now (for metrics)."""
        return {host: self.is_open(host) for host in list(self._seen)}

    def is_open(self, host: str) -> bool:
        """Whether requests to `host` wait for a probe."""
        circuit = self._circuits.get(host)
        return circuit is not None and circuit.open_since is not None

    def _notify(self, circuit: _Circuit) -> None:
        """Wake everyone waiting on `circuit`."""
        circuit.changed.set()
        circuit.changed = asyncio.Event()

    async def admit(self, host: str, max_wait_s: float) -> tuple[float, bool]:
        """Wait until `host` may be requested; (seconds waited, whether this is the probe)."""
        begun = self._clock()
        try:
            waited, probe = await self._admit(host, max_wait_s, begun)
        finally:
            self.waited_s += self._clock() - begun
        return waited, probe

    async def _admit(self, host: str, max_wait_s: float, begun: float) -> tuple[float, bool]:
        """`admit`'s loop: wake on every change of the circuit until admitted or out of time."""
        while (circuit := self._circuits.get(host)) is not None and circuit.open_since is not None:
            now = self._clock()
            if not circuit.probing and now >= circuit.retry_at:
                circuit.probing = True
                self.probes += 1
                return now - begun, True
            waited = now - begun
            if waited >= max_wait_s:
                raise FetchFailed(
                    f"{host} has been failing for {now - circuit.open_since:.0f} s "
                    f"(last error: {circuit.last_error}); "
                    f"gave up after waiting {waited:.0f} s for it"
                )
            wake = max_wait_s - waited
            if not circuit.probing:
                wake = min(wake, circuit.retry_at - now)
            try:
                await asyncio.wait_for(circuit.changed.wait(), timeout=max(0.01, wake))
            except TimeoutError:
                pass
        return self._clock() - begun, False

    def success(self, host: str) -> None:
        """`host` answered (anything but a 5xx): close its circuit."""
        circuit = self._circuits.get(host)
        if circuit is None:
            return
        if circuit.open_since is not None:
            down_for = self._clock() - circuit.open_since
            log.warning("%s answers again after %.1f s: circuit closed", host, down_for)
        circuit.open_since = None
        self._circuits.pop(host)
        self._notify(circuit)

    def failure(self, host: str, detail: str, probe: bool = False) -> None:
        """`host` failed transiently: count it, open the circuit at the threshold, back off."""
        circuit = self._circuits.setdefault(host, _Circuit())
        self._seen.add(host)
        circuit.failures += 1
        circuit.last_error = detail
        now = self._clock()
        if circuit.open_since is None:
            if circuit.failures < self.threshold:
                return
            circuit.open_since = now
            circuit.cooldown = self.cooldown_s
            self.opened += 1
            log.warning(
                "%s failed %d times in a row (%s): circuit open, requests wait for a probe",
                host,
                circuit.failures,
                detail,
            )
        elif probe:
            circuit.cooldown = min(circuit.cooldown * 2, self.max_cooldown_s)
            log.info(
                "probe of %s failed (%s); next probe in %.1f s", host, detail, circuit.cooldown
            )
        if probe or circuit.failures == self.threshold:
            circuit.probing = False
            circuit.retry_at = now + circuit.cooldown
            self._notify(circuit)

    def release(self, host: str) -> None:
        """A probe ended without telling anything about the host (refused locally, cancelled)."""
        circuit = self._circuits.get(host)
        if circuit is not None and circuit.probing:
            circuit.probing = False
            self._notify(circuit)
