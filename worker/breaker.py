"""Per-host circuit breaker: a failing site makes requests wait instead of burning retries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from worker.errors import FetchFailed

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}
BREAKER_THRESHOLD = 5
BREAKER_COOLDOWN_S = 1.0
BREAKER_MAX_COOLDOWN_S = 15.0


def host_key(url: str) -> str:
    """`host:port` of a URL, the unit the circuit breaker tracks."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        port = 0
    return f"{(parts.hostname or '').lower()}:{port}"


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
    them goes out as the probe when the cooldown ends (1 s, doubling to `max_cooldown_s`).
    A probe that gets an answer closes the circuit and wakes everyone; one that fails
    doubles the cooldown. No one waits longer than `max_wait_s` in total.
    """

    def __init__(
        self,
        threshold: int = BREAKER_THRESHOLD,
        cooldown_s: float = BREAKER_COOLDOWN_S,
        max_cooldown_s: float = BREAKER_MAX_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.threshold = max(1, threshold)
        self.cooldown_s = max(0.01, cooldown_s)
        self.max_cooldown_s = max(self.cooldown_s, max_cooldown_s)
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self.opened = 0  # times a circuit opened, for metrics and tests
        self.probes = 0

    def is_open(self, host: str) -> bool:
        circuit = self._circuits.get(host)
        return circuit is not None and circuit.open_since is not None

    def _notify(self, circuit: _Circuit) -> None:
        circuit.changed.set()
        circuit.changed = asyncio.Event()

    async def admit(self, host: str, max_wait_s: float) -> tuple[float, bool]:
        """Wait until `host` may be requested; return (seconds waited, whether this is the probe)."""
        begun = self._clock()
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
                    f"(last error: {circuit.last_error}); gave up after waiting {waited:.0f} s for it"
                )
            wake = max_wait_s - waited if circuit.probing else min(max_wait_s - waited, circuit.retry_at - now)
            try:
                await asyncio.wait_for(circuit.changed.wait(), timeout=max(0.01, wake))
            except TimeoutError:
                pass
        return self._clock() - begun, False

    def success(self, host: str, probe: bool = False) -> None:
        """`host` answered (anything but a 5xx): close its circuit."""
        circuit = self._circuits.get(host)
        if circuit is None:
            return
        if circuit.open_since is not None:
            log.warning("%s answers again after %.1f s: circuit closed", host, self._clock() - circuit.open_since)
        circuit.open_since = None
        self._circuits.pop(host)
        self._notify(circuit)

    def failure(self, host: str, detail: str, probe: bool = False) -> None:
        """`host` failed transiently: count it, open the circuit at the threshold, back off probes."""
        circuit = self._circuits.setdefault(host, _Circuit())
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
                host, circuit.failures, detail,
            )
        elif probe:
            circuit.cooldown = min(circuit.cooldown * 2, self.max_cooldown_s)
            log.info("probe of %s failed (%s); next probe in %.1f s", host, detail, circuit.cooldown)
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
