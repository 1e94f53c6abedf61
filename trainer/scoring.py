"""Scoring exported versions on evaluation films through their serving signature.

The release gate and `evaluate` measure what the workers serve: poster bytes go into the
version's `serving_default` (its own decoding and resizing), and its own thresholds
decide. Each version is scored on its own labels only, against the films' MovieLens
genres; the films are ones that no version trained on (the hash split's evaluation part).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from poster_genres.schemas.model import INPUT_NAME, OUTPUT_NAME, SIGNATURE, ModelMetadata
from poster_genres.trainer.evaluation import evaluate
from poster_genres.trainer.movielens import genres_by_id, without_genres
from poster_genres.trainer.posters import PosterCache
from poster_genres.trainer.split import bucket, films_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Films:
    """Films to measure versions on: TMDB ids, MovieLens genres and cached poster files."""

    tmdb_ids: np.ndarray  # [n] int
    genres: list[list[str]]
    posters: list[Path]

    def __len__(self) -> int:
        return len(self.tmdb_ids)

    def truth(self, labels: Sequence[str]) -> np.ndarray:
        """0/1 matrix [n, len(labels)]: which of `labels` each film has."""
        y = np.zeros((len(self), len(labels)), np.float32)
        index = {label: j for j, label in enumerate(labels)}
        for i, genres in enumerate(self.genres):
            for genre in genres:
                if genre in index:
                    y[i, index[genre]] = 1.0
        return y

    def subset(self, rows: np.ndarray) -> Films:
        """The films at `rows`."""
        return Films(
            self.tmdb_ids[rows], [self.genres[i] for i in rows], [self.posters[i] for i in rows]
        )

    def digest(self) -> dict[str, int | str]:
        """Their count and the digest of their sorted ids (`trainer.split.films_digest`)."""
        return films_digest(self.tmdb_ids)


def films_of(
    genres: Mapping[int, Sequence[str]], tmdb_ids: Sequence[int], cache: PosterCache
) -> Films:
    """The films of `tmdb_ids` with their MovieLens genres and cached posters, in id order."""
    ids = sorted(int(i) for i in tmdb_ids)
    return Films(
        np.asarray(ids, np.int64), [list(genres[i]) for i in ids], [cache.path(i) for i in ids]
    )


def evaluation_films(
    labelled: pd.DataFrame, excluded: Sequence[str], cache: PosterCache, test_fraction: float
) -> Films:
    """The labelled films with a cached poster in the evaluation part of the hash split.

    Films whose only genres are `excluded` are left out, as `train` leaves them out; the
    others keep all their genres, so a version is scored on every label it has.
    """
    used = without_genres(labelled, excluded)["tmdbId"].astype(int)
    ids = [i for i in used if bucket(i) < test_fraction and cache.has(i)]
    return films_of(genres_by_id(labelled), ids, cache)


@dataclass
class Scored:
    """One version's scores on the films: NaN rows for posters its signature cannot decode."""

    version: int
    metadata: ModelMetadata
    scores: np.ndarray  # [n, n_labels]
    failed: dict[int, str] = field(default_factory=dict)  # TMDB id -> why


def score_version(version_dir: Path, films: Films, batch_size: int = 32) -> Scored:
    """Score every film's poster bytes with the version's serving signature, in batches."""
    metadata = ModelMetadata.read(version_dir)
    serve = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE]
    scores = np.full((len(films), len(metadata.labels)), np.nan, np.float32)
    failed: dict[int, str] = {}
    for start in range(0, len(films), batch_size):
        rows = range(start, min(start + batch_size, len(films)))
        images = [films.posters[i].read_bytes() for i in rows]
        try:
            scores[rows.start : rows.stop] = _call(serve, images)
        except tf.errors.InvalidArgumentError:
            for i, image in zip(rows, images, strict=True):
                try:
                    scores[i] = _call(serve, [image])[0]
                except tf.errors.InvalidArgumentError as exc:
                    failed[int(films.tmdb_ids[i])] = (exc.message or "").strip()[:200]
    log.info("scored version %s on %d films", version_dir.name, len(films) - len(failed))
    return Scored(int(version_dir.name), metadata, scores, failed)


def _call(serve: Any, images: list[bytes]) -> np.ndarray:
    """One call of a serving signature: encoded images -> scores [len(images), n_labels]."""
    return serve(**{INPUT_NAME: tf.constant(images, dtype=tf.string)})[OUTPUT_NAME].numpy()


def figures(scored: Scored, films: Films, rows: np.ndarray) -> dict[str, Any]:
    """The version's metrics on the films at `rows`, with its own labels and thresholds."""
    labels = scored.metadata.labels
    return evaluate(
        films.truth(labels)[rows], scored.scores[rows], scored.metadata.thresholds, labels
    )


def all_genres_baseline(films: Films, labels: Sequence[str], rows: np.ndarray) -> dict[str, Any]:
    """The metrics of predicting every one of `labels` for every film at `rows`."""
    y = films.truth(labels)[rows]
    return evaluate(y, np.ones_like(y), np.zeros(len(labels)), labels)
