"""Poster fetching, shared by the worker and the trainer: find a movie's poster on
themoviedb.org (or its API) and download it, within an allowlist, caps and time limits.

    async with PosterFetcher(FetchSettings()) as fetcher:
        poster = await fetcher.fetch(603)       # a Poster, or a PosterError with a code
"""

from poster_genres.posters.errors import (
    CodedError,
    FetchFailed,
    HostNotAllowed,
    InvalidURL,
    MovieNotFound,
    PosterError,
    PosterNotFound,
    PosterTooLarge,
    PosterUnreadable,
    TransientError,
)
from poster_genres.posters.fetcher import FetchStats, Poster, PosterFetcher
from poster_genres.posters.settings import FetchSettings

__all__ = [
    "CodedError",
    "FetchFailed",
    "FetchSettings",
    "FetchStats",
    "HostNotAllowed",
    "InvalidURL",
    "MovieNotFound",
    "Poster",
    "PosterError",
    "PosterFetcher",
    "PosterNotFound",
    "PosterTooLarge",
    "PosterUnreadable",
    "TransientError",
]
