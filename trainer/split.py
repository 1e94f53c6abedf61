"""Splitting the examples into train, validation and evaluation (test) parts.

By default the split is a fixed yardstick: each film's part follows from its TMDB id
alone. SHA-256 of the id places it at a fixed point of [0, 1); the first `test_fraction`
of that range is the evaluation part, the next `val_fraction` validation, the rest
training. A film therefore stays in its part as MovieLens grows and from one run to the
next, so two versions are measured on the same films (plus new ones that fall there).
The other method, a seeded split stratified by genre, balances the parts better on small
data but moves films whenever the data changes. Reports name their evaluation films by
count and a digest of their sorted ids, whichever the method.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from poster_genres.trainer.data import stratified_split
from poster_genres.trainer.errors import DataError

if TYPE_CHECKING:
    from poster_genres.trainer.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Row indices of the examples in each part, ascending."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray  # the evaluation films; empty when no test fraction is held out


def bucket(tmdb_id: int) -> float:
    """A film's fixed point in [0, 1): the first 8 bytes of SHA-256 of its decimal id."""
    digest = hashlib.sha256(str(int(tmdb_id)).encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_examples(tmdb_ids: np.ndarray, y: np.ndarray, settings: TrainSettings) -> Split:
    """Split the examples (TMDB ids [n], labels y [n, n_labels]) the way `settings.split` says."""
    if settings.split == "tmdb-id":
        split = split_by_id(tmdb_ids, settings.val_fraction, settings.test_fraction)
    else:
        split = split_stratified(y, settings.val_fraction, settings.test_fraction, settings.seed)
    if len(split.train) == 0 or len(split.validation) == 0:
        raise DataError(f"{len(y)} usable posters are too few to split for training")
    log.info(
        "split (%s): %d train, %d validation, %d test",
        settings.split,
        len(split.train),
        len(split.validation),
        len(split.test),
    )
    return split


def split_by_id(
    tmdb_ids: Sequence[int] | np.ndarray, val_fraction: float, test_fraction: float
) -> Split:
    """Split by the buckets of the TMDB ids: test first, then validation, then train."""
    points = np.fromiter((bucket(i) for i in tmdb_ids), dtype=np.float64, count=len(tmdb_ids))
    test = points < test_fraction
    validation = ~test & (points < test_fraction + val_fraction)
    return Split(
        np.flatnonzero(~test & ~validation), np.flatnonzero(validation), np.flatnonzero(test)
    )


def split_stratified(y: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> Split:
    """A seeded split of the label matrix y [n, n_labels], stratified by genre."""
    fractions = [1 - val_fraction - test_fraction, val_fraction]
    if test_fraction:
        fractions.append(test_fraction)
    parts = stratified_split(y, fractions, seed)
    return Split(parts[0], parts[1], parts[2] if len(parts) > 2 else np.zeros(0, int))


def films_digest(tmdb_ids: Sequence[int] | np.ndarray) -> dict[str, int | str]:
    """Which films a metric was measured on: their count and SHA-256 of the sorted ids.

    The digest is of the ids in ascending order as decimal text, one per line, each
    line ending with a newline: `printf '603\\n604\\n' | sha256sum` gives the same.
    """
    text = "".join(f"{i}\n" for i in sorted(int(i) for i in tmdb_ids))
    return {"count": len(tmdb_ids), "sha256": hashlib.sha256(text.encode("ascii")).hexdigest()}
