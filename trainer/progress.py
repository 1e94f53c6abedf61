"""Progress of long steps: a bar on a terminal, log lines where there is none.

`auto` (the default) draws a tqdm bar only when stderr is a terminal. Under cron or in a
container's log, where a bar would be hundreds of carriage-return frames, the same
progress becomes a log record every `LOG_EVERY_S` seconds and one at the end, so it
follows `--log-format` (one JSON object per line with `json`). `always` draws the bar
anyway, `never` draws none and logs only the end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Literal, Self

from tqdm import tqdm

ProgressMode = Literal["auto", "always", "never"]
LOG_EVERY_S = 30.0
log = logging.getLogger(__name__)


def progress_mode(value: object) -> object:
    """Booleans as modes: True is `always`, False is `never` (the `--no-progress` of before)."""
    if isinstance(value, bool):
        return "always" if value else "never"
    return value


def draws_bar(mode: ProgressMode | bool, stream: IO[str] | None = None) -> bool:
    """Whether `mode` draws a bar on `stream` (stderr by default)."""
    mode = progress_mode(mode)  # type: ignore[assignment]
    if mode == "auto":
        stream = stream if stream is not None else sys.stderr
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return mode == "always"


class Progress:
    """Counts done items of a step; draws a bar or logs, as the mode says."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str,
        mode: ProgressMode | bool = "auto",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.mode = progress_mode(mode)
        self.done = 0
        self._clock = clock or time.monotonic
        self._started = self._last_log = self._clock()
        self._bar = tqdm(total=total, desc=desc, unit=unit) if draws_bar(mode) else None

    def update(self, n: int = 1) -> None:
        """Count `n` more items done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self._clock()
        if self.mode == "auto" and now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            self._log(now)

    def close(self) -> None:
        """End the bar, or log where the step ended."""
        if self._bar is not None:
            self._bar.close()
        elif self.total:
            self._log(self._clock())

    def _log(self, now: float) -> None:
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        log.info(
            "%s: %d/%d %s (%.0f%%), %.1f %s/s",
            self.desc, self.done, self.total, self.unit,
            100.0 * self.done / self.total if self.total else 100.0, rate, self.unit,
        )  # fmt: skip

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
