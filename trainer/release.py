"""Which version the workers serve: the `serving.json` pointer, moved by promote and rollback.

Workers re-read the pointer every MODEL_POLL_S, so moving it serves another version
without a restart, a lower one included. The pointer is written to a temporary file and
renamed over the old one (`os.replace`), so a worker never reads half of it, and only
while holding the model folder's lock (`trainer/versions.py`), so a promote, a rollback
and an export never interleave. Promoting a candidate first renames its folder from
`candidates/<N>/` to `<N>/` (one rename, so it appears whole); its number was reserved
when it was exported. Without a pointer the highest version is served, as before there
was one; the first promote or rollback writes it.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from poster_genres.schemas.model import (
    CANDIDATES_DIR,
    SERVING_FILE,
    PointerError,
    ServingPointer,
    complete_versions,
    is_complete,
    latest_version,
    served_version,
    version_numbers,
)
from poster_genres.trainer.errors import ReleaseError
from poster_genres.trainer.versions import locked

log = logging.getLogger(__name__)

HISTORY = 20  # versions kept in the pointer's `previous` list


@dataclass(frozen=True)
class Moved:
    """What a promote or rollback did: the version served before and the new pointer."""

    was: int | None
    pointer: ServingPointer

    def line(self) -> str:
        """One line for the operator."""
        was = f"version {self.was}" if self.was is not None else "nothing"
        return f"serving version {self.pointer.version} (was {was})"


def candidate_versions(model_dir: Path) -> list[int]:
    """Complete candidates (held back, never served), ascending."""
    return complete_versions(model_dir / CANDIDATES_DIR)


def serving(model_dir: Path) -> int | None:
    """The served version (`schemas.model.served_version`); ReleaseError if the pointer is bad."""
    try:
        return served_version(model_dir)
    except PointerError as exc:
        raise ReleaseError(f"{exc}; `promote N` writes a new one") from exc


def version_dir(model_dir: Path, version: int) -> Path:
    """The folder of a complete version, promoted or candidate; ReleaseError if there is none."""
    for folder in (model_dir / str(version), model_dir / CANDIDATES_DIR / str(version)):
        if is_complete(folder):
            return folder
    raise ReleaseError(f"no complete version {version} in {model_dir} or its {CANDIDATES_DIR}/")


def promote(model_dir: Path, version: int) -> Moved:
    """Serve `version`: move it in from candidates/ if it is one, then point the workers at it."""
    _check_folder(model_dir)
    with locked(model_dir):
        old = _pointer_or_none(model_dir)
        was = old.version if old is not None else latest_version(model_dir)
        target = model_dir / str(version)
        if not is_complete(target):
            source = version_dir(model_dir, version)  # the candidate, or ReleaseError
            if target.exists():
                raise ReleaseError(
                    f"{target} exists but is incomplete; remove it to promote "
                    f"the candidate {version}"
                )
            os.rename(source, target)
            log.info("moved candidate %d from %s into %s", version, source, target)
        history = [] if old is None else old.previous
        if was is not None and was != version:
            history = [was, *history]
        previous = list(dict.fromkeys(v for v in history if v != version))[:HISTORY]
        pointer = ServingPointer(version=version, previous=previous, updated_at=_now())
        write_pointer(model_dir, pointer)
    moved = Moved(was, pointer)
    log.info("promoted: %s", moved.line())
    return moved


def rollback(model_dir: Path) -> Moved:
    """Serve the version served before the current one (the first of those still present)."""
    _check_folder(model_dir)
    with locked(model_dir):
        try:
            old = ServingPointer.read(model_dir)
        except PointerError as exc:
            raise ReleaseError(f"{exc}; `promote N` writes a new one") from exc
        if old is None:  # served: the highest; before it, the next highest
            was = latest_version(model_dir)
            history = [v for v in reversed(version_numbers(model_dir)) if was and v < was]
        else:
            was, history = old.version, old.previous
        for i, version in enumerate(history):
            if is_complete(model_dir / str(version)):
                pointer = ServingPointer(
                    version=version, previous=history[i + 1 :], updated_at=_now()
                )
                write_pointer(model_dir, pointer)
                moved = Moved(was, pointer)
                log.info("rolled back: %s", moved.line())
                return moved
    raise ReleaseError(f"no version served before {was} is left in {model_dir} to roll back to")


def write_pointer(model_dir: Path, pointer: ServingPointer) -> None:
    """Replace `serving.json` atomically (call with the lock held)."""
    tmp = model_dir / f".{SERVING_FILE}.{uuid.uuid4().hex}"
    tmp.write_text(pointer.model_dump_json(indent=2) + "\n", "utf-8")
    os.replace(tmp, model_dir / SERVING_FILE)


def _pointer_or_none(model_dir: Path) -> ServingPointer | None:
    """The pointer; an unreadable one is reported and replaced (promote is how to fix it)."""
    try:
        return ServingPointer.read(model_dir)
    except PointerError as exc:
        log.warning("replacing an unreadable serving pointer: %s", exc)
        return None


def _check_folder(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise ReleaseError(f"{model_dir} is not a model folder")


def _now() -> datetime:
    return datetime.now(UTC)
