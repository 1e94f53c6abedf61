"""Serve the newest model version, and switch to a newer one between batches.

Loading and warming a SavedModel takes seconds, so it happens on a thread of its own;
the Kafka thread only swaps the reference between two batches, which is why a reload
neither drops nor double-publishes a message. A refused version is remembered by the
identity of its folder, not by its number: a folder replaced under the same number is
tried at once, and the same folder is tried again after a back-off, since a warm-up can
fail for a passing reason (memory, a device busy).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from schemas.model import METADATA_FILE
from worker.classifier import Classifier, ModelLoadError, complete_versions, load_version

log = logging.getLogger(__name__)

REFUSAL_BACKOFF_S = 300.0  # a refused folder, unchanged, is tried again after this long
IDENTITY_FILES = (METADATA_FILE, "saved_model.pb")


@dataclass(frozen=True)
class FolderIdentity:
    """What tells two folders of one version number apart: inode, ctime, mtime and size."""

    version: int
    stats: tuple[tuple[int, int, int, int], ...]


def folder_identity(path: Path) -> FolderIdentity | None:
    """The identity of a version folder (None if it vanished or lost a file)."""
    try:
        stats = [os.stat(path)] + [os.stat(path / name) for name in IDENTITY_FILES]
    except OSError:
        return None
    return FolderIdentity(
        int(path.name), tuple((s.st_ino, s.st_ctime_ns, s.st_mtime_ns, s.st_size) for s in stats)
    )


class Refusals:
    """Refused version folders by identity, each standing until its back-off ends."""

    def __init__(self, backoff_s: float) -> None:
        self.backoff_s = backoff_s
        self._until: dict[FolderIdentity, float] = {}
        self._lock = threading.Lock()

    def add(self, identity: FolderIdentity) -> None:
        """Refuse this folder until the back-off ends."""
        with self._lock:
            self._until[identity] = time.monotonic() + self.backoff_s

    def stands(self, identity: FolderIdentity | None) -> bool:
        """True while this very folder is refused (a vanished folder counts as refused)."""
        if identity is None:
            return True
        with self._lock:
            until = self._until.get(identity)
            if until is not None and time.monotonic() >= until:
                del self._until[identity]
                return False
            return until is not None

    def versions(self, model_dir: Path) -> set[int]:
        """Version numbers whose folder, as it is now, is refused."""
        with self._lock:
            numbers = {identity.version for identity in self._until}
        return {v for v in numbers if self.stands(folder_identity(model_dir / str(v)))}


class ModelWatcher:
    """Polls MODEL_DIR; loads and warms a newer version in the background, swaps on `poll()`.

    A version that fails to load or warm up is refused (logged) while its folder stays
    the same, for `refusal_backoff_s`; the current one keeps serving.
    """

    def __init__(
        self,
        model_dir: Path,
        device: str = "CPU:0",
        poll_s: float = 10.0,
        on_reload: Callable[[str], None] | None = None,
        refusal_backoff_s: float = REFUSAL_BACKOFF_S,
    ):
        self.model_dir = model_dir
        self.device = device
        self.poll_s = poll_s
        self.current: Classifier | None = None
        self.refusals = Refusals(refusal_backoff_s)
        self._on_reload = on_reload or (lambda outcome: None)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="model-loader"
        )
        self._pending: concurrent.futures.Future[Classifier | None] | None = None
        self._next_check = time.monotonic() + poll_s

    @property
    def refused(self) -> set[int]:
        """Version numbers refused as their folders are now."""
        return self.refusals.versions(self.model_dir)

    def load_initial(
        self, wait_s: float = 0.0, should_stop: Callable[[], bool] = lambda: False
    ) -> Classifier | None:
        """Load the newest good version, waiting up to `wait_s` for one to appear."""
        deadline = time.monotonic() + wait_s
        announced = False
        while True:
            self.current = self._load_newest(newer_than=0, count_refusals=False)
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
            swapped = self._take(self._pending)
            self._pending = None
        now = time.monotonic()
        if self._pending is None and now >= self._next_check:
            self._next_check = now + self.poll_s
            if self._has_newer():
                self._pending = self._executor.submit(self._load_newer)
        return swapped

    def _take(self, loaded: concurrent.futures.Future[Classifier | None]) -> Classifier | None:
        """Serve the version the loader finished, if it loaded one."""
        try:
            candidate = loaded.result()
        except Exception:  # _load_newest logs and refuses; this is a last resort
            log.exception("loading a new model version failed")
            candidate = None
        if candidate is None:
            return None
        old, self.current = self.current, candidate
        self._on_reload("loaded")
        log.info(
            "now serving model version %d (was %s)",
            candidate.version, old.version if old else "none",
        )
        return candidate

    def _has_newer(self) -> bool:
        """A complete version above the current one whose folder is not refused."""
        current = self.current.version if self.current else 0
        return any(
            not self.refusals.stands(folder_identity(self.model_dir / str(v)))
            for v in complete_versions(self.model_dir)
            if v > current
        )

    def _load_newer(self) -> Classifier | None:
        """On the loader thread: the newest version above the current one that loads."""
        return self._load_newest(newer_than=self.current.version if self.current else 0)

    def _load_newest(self, newer_than: int, count_refusals: bool = True) -> Classifier | None:
        """The highest complete version above `newer_than` that loads; refuse the others."""
        for version in reversed(complete_versions(self.model_dir)):
            if version <= newer_than:
                break
            path = self.model_dir / str(version)
            identity = folder_identity(path)
            if identity is None or self.refusals.stands(identity):
                continue
            try:
                return load_version(path, self.device)
            except ModelLoadError as exc:
                self.refusals.add(identity)
                if count_refusals:
                    self._on_reload("refused")
                log.error(
                    "refused model version %d, keeping the current one (tried again in %.0f s, "
                    "or when its folder changes): %s", version, self.refusals.backoff_s, exc,
                )
        return None

    def close(self) -> None:
        """Stop the loader thread (a load in progress is waited for)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
