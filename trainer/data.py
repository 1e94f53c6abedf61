"""Labels and splits: multi-label binarisation, a seeded stratified split, tf.data pipelines."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from poster_genres.trainer.errors import DataError
from poster_genres.trainer.preprocess import read_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Labels:
    """The label vocabulary (in the model's output order) and a 0/1 matrix [n_movies, n_labels]."""

    names: list[str]
    y: np.ndarray
    left_out: dict[str, int] = field(default_factory=dict)  # too rare to learn: genre -> films


def binarize(genres: Sequence[Sequence[str]], min_count: int = 1) -> Labels:
    """Genre lists -> `Labels`; genres seen fewer than `min_count` times are dropped.

    The label order is by descending frequency, then by name, so it is stable.
    """
    counts = Counter(g for movie in genres for g in set(movie))
    names = sorted((g for g, c in counts.items() if c >= min_count), key=lambda g: (-counts[g], g))
    dropped = sorted(set(counts) - set(names))
    if dropped:
        log.info(
            "dropping %d genre(s) with fewer than %d movies: %s",
            len(dropped),
            min_count,
            ", ".join(f"{g} ({counts[g]})" for g in dropped),
        )
    if not names:
        raise DataError("no genre has enough labelled movies to learn from")
    index = {g: i for i, g in enumerate(names)}
    y = np.zeros((len(genres), len(names)), dtype=np.float32)
    for row, movie in enumerate(genres):
        for g in movie:
            if g in index:
                y[row, index[g]] = 1.0
    return Labels(names, y, {g: counts[g] for g in dropped})


def stratified_split(y: np.ndarray, fractions: Sequence[float], seed: int = 42) -> list[np.ndarray]:
    """Split rows of a multi-label matrix into parts of the given `fractions` (summing to 1).

    Iterative stratification (Sechidis et al., 2011): the rarest label is placed first,
    each of its examples into the part that most lacks that label, so every part gets
    close to its share of every label. Rows without labels are shared out by size.
    Returns sorted row indices per part; the result depends only on `y` and `seed`.
    """
    fractions = np.asarray(fractions, dtype=float)
    if abs(fractions.sum() - 1.0) > 1e-6 or (fractions < 0).any():
        raise ValueError(f"fractions {list(fractions)} must be >= 0 and sum to 1")
    rng = np.random.default_rng(seed)
    n = len(y)
    order = rng.permutation(n)
    y = y[order] > 0
    want_rows = fractions * n
    want_labels = np.outer(fractions, y.sum(axis=0))  # [parts, labels]
    parts: list[list[int]] = [[] for _ in fractions]
    free = np.ones(n, dtype=bool)
    while free.any() and (y[free].sum(axis=0) > 0).any():
        counts = y[free].sum(axis=0).astype(float)
        counts[counts == 0] = np.inf
        label = int(np.argmin(counts))
        for row in np.flatnonzero(free & y[:, label]):
            need = want_labels[:, label]
            best = np.flatnonzero(need == need.max())
            if len(best) > 1:
                rows_need = want_rows[best]
                best = best[rows_need == rows_need.max()]
            part = int(best[rng.integers(len(best))]) if len(best) > 1 else int(best[0])
            parts[part].append(row)
            free[row] = False
            want_labels[part] -= y[row]
            want_rows[part] -= 1
    for row in np.flatnonzero(free):
        part = int(np.argmax(want_rows))
        parts[part].append(row)
        want_rows[part] -= 1
    return [np.sort(order[np.asarray(p, dtype=int)]) for p in parts]


def image_dataset(
    paths: Sequence[str],
    image_size: tuple[int, int],
    batch_size: int,
    labels: np.ndarray | None = None,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Files -> batches of float32 [batch, h, w, 3] images in [0, 1] (with labels if given).

    Reading and decoding run in parallel and the next batches are prefetched.
    """
    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    if labels is not None:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(labels)))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)

    def load(path: tf.Tensor, *rest: tf.Tensor) -> tf.Tensor | tuple[tf.Tensor, ...]:
        """A path (and its labels) -> the image (and its labels)."""
        image = read_image(path, image_size)
        return (image, *rest) if rest else image

    return (
        ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def array_dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None
) -> tf.data.Dataset:
    """In-memory (embeddings, labels) -> shuffled, batched, prefetched dataset."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
