"""Collecting the training examples: labelled movies -> cached posters -> embeddings and labels.

The first step of `train`, in two parts so that the feature extractor is loaded only
once there is something to embed (and is then reused for the exported model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from poster_genres.trainer.data import Labels, binarize
from poster_genres.trainer.embeddings import EmbeddingCache, Extractor, embed_images, extractor_key
from poster_genres.trainer.errors import DataError
from poster_genres.trainer.movielens import genres_by_id, load_movies, without_genres
from poster_genres.trainer.posters import PosterCache, fetch_posters

if TYPE_CHECKING:
    from poster_genres.posters import FetchSettings
    from poster_genres.trainer.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass
class PosteredMovies:
    """The labelled movies whose poster is in the cache (a MovieLens table slice)."""

    movies: pd.DataFrame  # their genres without the excluded ones
    genres: dict[int, list[str]]  # TMDB id -> all their MovieLens genres
    labelled: int  # labelled movies in MovieLens, with a poster or not
    fetch_summary: str | None  # what fetching missing posters did; None when offline


@dataclass
class Examples:
    """The movies to learn from: TMDB ids, embeddings, labels, and what was left out."""

    tmdb_ids: np.ndarray  # [n] int
    x: np.ndarray  # [n, dim] float32 embeddings
    labels: Labels  # names, y [n, n_labels]
    labelled: int  # labelled movies in MovieLens
    with_poster: int  # of which had a cached poster
    skipped: dict[int, str]  # TMDB id -> why its cached poster could not be used
    fetch_summary: str | None
    embed_s: float


def postered_movies(
    settings: TrainSettings, fetch_settings: FetchSettings | None
) -> PosteredMovies:
    """The labelled movies with a cached poster, after fetching missing ones unless offline."""
    every = load_movies(settings).labelled
    labelled = without_genres(every, settings.exclude_genres)
    if labelled.empty:
        raise DataError("no movie has both genres and a TMDB id: nothing to train on")
    cache = PosterCache(settings.posters)
    ids = [int(i) for i in labelled["tmdbId"]]
    fetch_summary = None
    if not settings.offline:
        if fetch_settings is None:
            raise ValueError("fetching posters needs fetch settings (or use --offline)")
        fetched = fetch_posters(ids, cache, fetch_settings, progress=settings.progress)
        fetch_summary = fetched.summary()
    have = labelled[[cache.has(i) for i in ids]]
    log.info("%d of %d labelled movies have a cached poster", len(have), len(labelled))
    if have.empty:
        raise DataError(f"no poster of a labelled movie is in {settings.posters}")
    return PosteredMovies(have, genres_by_id(every), len(labelled), fetch_summary)


def embed_examples(
    postered: PosteredMovies, extractor: Extractor, settings: TrainSettings
) -> Examples:
    """Embed the posters (through the embedding cache) and binarise the genres of those used."""
    have, cache = postered.movies, PosterCache(settings.posters)
    started = time.monotonic()
    embedded = embed_images(
        [cache.path(int(i)) for i in have["tmdbId"]],
        extractor,
        settings.image_size,
        settings.embed_batch_size,
        EmbeddingCache(
            settings.embedding_dir,
            extractor_key(
                settings.feature_extractor,
                settings.image_size,
                settings.mirror,
                settings.extra_extractor,
                settings.extra_image_size,
            ),
        ),
        settings.progress,
    )
    embed_s = time.monotonic() - started
    usable = have.iloc[embedded.ok]
    skipped = {int(have.iloc[i]["tmdbId"]): reason for i, reason in embedded.failed.items()}
    if skipped:
        log.warning("skipped %d unreadable poster(s) in the cache", len(skipped))
    log.info(
        "embeddings %s: %d computed in %.1fs, the rest cached",
        embedded.vectors.shape[1:],
        embedded.computed,
        embed_s,
    )
    return Examples(
        tmdb_ids=usable["tmdbId"].to_numpy(dtype=np.int64),
        x=embedded.vectors,
        labels=binarize(list(usable["genres"]), settings.min_genre_count),
        labelled=postered.labelled,
        with_poster=len(have),
        skipped=skipped,
        fetch_summary=postered.fetch_summary,
        embed_s=embed_s,
    )
