"""Serve the version MODEL_DIR says to serve, and switch to it between batches.

Which version: MODEL_VERSION when set (a pin), else the one `serving.json` names, else the
highest complete one (`schemas.model.served_version`, which the trainer's promote and
rollback use too). The watcher checks every MODEL_POLL_S and switches to whatever that
is, a lower version included: that is how a rollback reaches running workers without a
restart. When the named version is missing or will not load, the current one keeps
serving; that is logged once and counted once, until the pointer moves or the version
appears. A worker that starts while it is so serves the highest version that loads.

Loading and warming a SavedModel takes seconds, so it happens on a thread of its own;
the Kafka thread only swaps the reference between two batches, which is why a switch
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
from typing import Any

from poster_genres.schemas.model import (
    METADATA_FILE,
    SERVING_FILE,
    PointerError,
    is_complete,
    served_version,
)
from poster_genres.worker.classifier import (
    Classifier,
    ModelLoadError,
    complete_versions,
    load_version,
)

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
    """Polls MODEL_DIR for the version to serve; loads it in the background, swaps on `poll()`.

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
        pinned: int | None = None,
        on_problem: Callable[[str], None] | None = None,
    ):
        self.model_dir = model_dir
        self.device = device
        self.poll_s = poll_s
        self.pinned = pinned  # MODEL_VERSION
        self.current: Classifier | None = None
        self.wanted: int | None = None  # what the pin, the pointer or the folder asks for
        self.refusals = Refusals(refusal_backoff_s)
        self._on_reload = on_reload or (lambda outcome: None)
        self._on_problem = on_problem or (lambda problem: None)
        self._problem: str | None = None  # the one reported, until it changes
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model-loader")
        self._pending: concurrent.futures.Future[Classifier | None] | None = None
        self._loading: int | None = None
        self._next_check = time.monotonic() + poll_s

    @property
    def refused(self) -> set[int]:
        """Version numbers refused as their folders are now."""
        return self.refusals.versions(self.model_dir)

    def load_initial(
        self, wait_s: float = 0.0, should_stop: Callable[[], bool] = lambda: False
    ) -> Classifier | None:
        """Load the version to serve, waiting up to `wait_s` for one to appear."""
        deadline = time.monotonic() + wait_s
        announced = False
        while True:
            self.current = self._load_first()
            if self.current is not None or time.monotonic() >= deadline or should_stop():
                return self.current
            if not announced:
                log.warning("no servable model version in %s yet; waiting", self.model_dir)
                announced = True
            time.sleep(min(1.0, self.poll_s))

    def poll(self) -> Classifier | None:
        """Between batches: switch to the version asked for if it finished loading; return it."""
        swapped = None
        if self._pending is not None and self._pending.done():
            swapped = self._take(self._pending)
            self._pending = None
        now = time.monotonic()
        if self._pending is None and now >= self._next_check:
            self._next_check = now + self.poll_s
            target = self._target()
            if target is not None:
                self._loading = target
                self._pending = self._executor.submit(self._load, target)
        return swapped

    def _load_first(self) -> Classifier | None:
        """At start: the version asked for if it loads, else the highest one that does."""
        target = self._target()
        loaded = self._load(target, count=False) if target is not None else None
        if loaded is None:
            for version in reversed(complete_versions(self.model_dir)):
                if version != target and (loaded := self._load(version, count=False)):
                    break
        return loaded

    def _target(self) -> int | None:
        """The version to load now: the one asked for, if it is not served and may be tried."""
        named_by = self._named_by()
        try:
            skip = self.refused if named_by is None else set()
            wanted = served_version(self.model_dir, self.pinned, skip=skip)
        except PointerError as exc:
            self._report("unreadable pointer", f"{exc}; {self._keeping()}")
            return None
        self.wanted = wanted
        if wanted is None or (self.current is not None and wanted == self.current.version):
            self._report(None)
            return None
        path = self.model_dir / str(wanted)
        if not is_complete(path):
            self._report(
                f"missing {wanted}",
                f"{named_by} names model version {wanted}, which "
                f"is missing or incomplete in {self.model_dir}; {self._keeping()}",
            )
            return None
        if self.refusals.stands(folder_identity(path)):
            self._report(
                f"refused {wanted}",
                f"{named_by} names model version {wanted}, which was refused; {self._keeping()}",
            )
            return None
        return wanted

    def _take(self, loaded: concurrent.futures.Future[Classifier | None]) -> Classifier | None:
        """Serve the version the loader finished, if it loaded one."""
        try:
            candidate = loaded.result()
        except Exception:  # _load logs and refuses; this is a last resort
            log.exception("loading model version %s failed", self._loading)
            candidate = None
        if candidate is None:
            if self._named_by() is not None:  # its refusal was the one line to log
                self._report(f"refused {self._loading}")
            return None
        old, self.current = self.current, candidate
        self._on_reload("loaded")
        self._report(None)
        log.info(
            "now serving model version %d (was %s)",
            candidate.version,
            old.version if old else "none",
        )
        return candidate

    def _load(self, version: int, count: bool = True) -> Classifier | None:
        """Load and warm one version (on the loader thread, or at start); refuse it if it fails."""
        path = self.model_dir / str(version)
        identity = folder_identity(path)
        if identity is None or self.refusals.stands(identity):
            return None
        try:
            return load_version(path, self.device)
        except ModelLoadError as exc:
            self.refusals.add(identity)
            if count:
                self._on_reload("refused")
            log.error(
                "refused model version %d, %s (tried again in %.0f s, or when its folder "
                "changes): %s",
                version,
                self._keeping(),
                self.refusals.backoff_s,
                exc,
            )
            return None

    def _named_by(self) -> str | None:
        """What names the version to serve: MODEL_VERSION, serving.json, or nothing."""
        if self.pinned is not None:
            return "MODEL_VERSION"
        return SERVING_FILE if (self.model_dir / SERVING_FILE).exists() else None

    def _keeping(self) -> str:
        """What serves meanwhile, for a log line."""
        if self.current is None:
            return "serving the highest version that loads meanwhile"
        return f"keeping version {self.current.version}"

    def _report(self, problem: str | None, line: str | None = None) -> None:
        """Log (`line`) and count a problem once, until another one replaces it or it clears."""
        if problem == self._problem:
            return
        self._problem = problem
        if problem is not None:
            if line:
                log.error("%s", line)
            self._on_problem(problem)

    def close(self) -> None:
        """Stop the loader thread (a load in progress is waited for)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


def describe(watcher: ModelWatcher) -> dict[str, Any] | None:
    """What the served version means (`GET /model`): None while no model is loaded."""
    current = watcher.current
    if current is None:
        return None
    m = current.metadata
    headline = {k: v for k, v in m.metrics.items() if k != "per_genre"}
    return {
        "version": current.version,
        "wanted_version": watcher.wanted,
        "pinned": watcher.pinned is not None,
        "labels": m.labels,
        "thresholds": m.thresholds,
        "metrics": headline,
        "per_genre": m.metrics.get("per_genre", []),
        "created_at": m.created_at.isoformat(),
        "feature_extractor": m.feature_extractor,
        "extra_feature_extractor": (m.model_extra or {}).get("extra_feature_extractor"),
        "image_size": list(m.image_size),
        "excluded_genres": m.training_data.get("excluded_genres"),
    }
