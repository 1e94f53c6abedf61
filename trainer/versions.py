"""Version numbers that are never reused, even after the highest version is deleted.

`MODEL_DIR/versions.json` holds the high-water mark, `{"next": N}`. An exporter locks
MODEL_DIR itself (`fcntl.flock` on the folder), takes the larger of the mark and the
highest version folder + 1 (served or candidate), renames its finished folder to that
number (in MODEL_DIR, or in MODEL_DIR/candidates/ for a version the release gate has
still to judge) and raises the mark past it (a temporary file, then `os.replace`) before
it lets go. So two exporters never take one number, and a number once published always
means that one model, which is what a worker's logs, metrics and `model_version` fields
rely on. Moving the serving pointer (`trainer/release.py`) takes the same lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from poster_genres.schemas.model import CANDIDATES_DIR, version_numbers

MARK_FILE = "versions.json"


@contextmanager
def locked(model_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `model_dir` (blocking until other exporters let go)."""
    fd = os.open(model_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_mark(model_dir: Path) -> int:
    """The number the next version takes, by the mark alone (1 when there is none)."""
    path = model_dir / MARK_FILE
    if not path.is_file():
        return 1
    try:
        return int(json.loads(path.read_text("utf-8"))["next"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a version mark ({exc}); fix or delete it") from exc


def next_version(model_dir: Path) -> int:
    """The number the next export will take: past the mark and every version folder."""
    used = version_numbers(model_dir) + version_numbers(model_dir / CANDIDATES_DIR)
    return max(read_mark(model_dir), max(used, default=0) + 1)


def publish_version(ready: Path, model_dir: Path, candidate: bool = False) -> Path:
    """Rename the finished folder `ready` to the next number, under the lock; return it.

    A `candidate` lands in MODEL_DIR/candidates/, where workers never look.
    """
    with locked(model_dir):
        parent = model_dir / CANDIDATES_DIR if candidate else model_dir
        parent.mkdir(exist_ok=True)
        final = parent / str(next_version(model_dir))
        os.rename(ready, final)
        _write_mark(model_dir, int(final.name) + 1)
    return final


def _write_mark(model_dir: Path, next_number: int) -> None:
    """Replace the mark atomically."""
    tmp = model_dir / f".{MARK_FILE}.{uuid.uuid4().hex}"
    tmp.write_text(json.dumps({"next": next_number}) + "\n", "utf-8")
    os.replace(tmp, model_dir / MARK_FILE)
