"""Serve the newest model version, and switch to a newer one between batches.

Loading and warming a SavedModel takes seconds, so it happens on a thread of its own;
the Kafka thread only swaps the reference between two batches, which is why a reload
neither drops nor double-publishes a message.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from pathlib import Path

from worker.classifier import Classifier, complete_versions, load_latest

log = logging.getLogger(__name__)


class ModelWatcher:
    """Polls MODEL_DIR; loads and warms a newer version in the background, swaps on `poll()`.

    A version that fails to load or warm up is refused once (logged) and never retried;
    the current one keeps serving.
    """

    def __init__(
        self,
        model_dir: Path,
        device: str = "CPU:0",
        poll_s: float = 10.0,
        on_reload: Callable[[str], None] | None = None,
    ):
        self.model_dir = model_dir
        self.device = device
        self.poll_s = poll_s
        self.current: Classifier | None = None
        self.refused: set[int] = set()
        self._on_reload = on_reload or (lambda outcome: None)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        self._pending: concurrent.futures.Future[Classifier | None] | None = None
        self._next_check = time.monotonic() + poll_s

    def load_initial(
        self, wait_s: float = 0.0, should_stop: Callable[[], bool] = lambda: False
    ) -> Classifier | None:
        """Load the newest good version, waiting up to `wait_s` for one to appear."""
        deadline = time.monotonic() + wait_s
        announced = False
        while True:
            self.current = load_latest(
                self.model_dir, device=self.device, refused=self.refused
            )
            if self.current is not None or time.monotonic() >= deadline or should_stop():
                return self.current
            if not announced:
                log.warning("no servable model version in %s yet; waiting", self.model_dir)
                announced = True
            time.sleep(min(1.0, self.poll_s))

    def poll(self) -> Classifier | None:
        """Between batches: switch to a newer version if one finished loading; return it."""
        swapped = None
        if self._pending is not None and self._pending.done():
            try:
                candidate = self._pending.result()
            except Exception:  # load_latest logs and refuses; this is a last resort
                log.exception("loading a new model version failed")
                candidate = None
            self._pending = None
            if candidate is not None:
                old = self.current
                self.current = candidate
                swapped = candidate
                self._on_reload("loaded")
                log.info(
                    "now serving model version %d (was %s)",
                    candidate.version, old.version if old else "none",
                )
        now = time.monotonic()
        if self._pending is None and now >= self._next_check:
            self._next_check = now + self.poll_s
            if self._has_newer():
                self._pending = self._executor.submit(self._load_newer)
        return swapped

    def _has_newer(self) -> bool:
        """A complete version above the current one that was not refused."""
        current = self.current.version if self.current else 0
        return any(v > current and v not in self.refused for v in complete_versions(self.model_dir))

    def _load_newer(self) -> Classifier | None:
        """On the loader thread: the newest version above the current one that loads."""
        before = len(self.refused)
        current = self.current.version if self.current else 0
        loaded = load_latest(
            self.model_dir, newer_than=current, device=self.device, refused=self.refused
        )
        if len(self.refused) > before:
            self._on_reload("refused")
        return loaded

    def close(self) -> None:
        """Stop the loader thread (a load in progress is waited for)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
