"""The poster cache (`<tmdbId>.jpg` files) and filling it with the worker's own fetcher.

    <posters>/<tmdbId>.jpg     the poster bytes as fetched (JPEG, PNG or WebP; decoding sniffs)
    <posters>/failures.json    tmdbId -> {code, detail, failed_at} of the last failed fetch

Fetching is resumable: posters already in the cache are skipped, and so are movies whose
last failure was permanent (the movie or its poster does not exist) unless asked to retry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from poster_genres.trainer.progress import Progress, ProgressMode

if TYPE_CHECKING:
    from poster_genres.posters import FetchSettings

log = logging.getLogger(__name__)

MANIFEST = "failures.json"
RETRYABLE_CODES = frozenset({"fetch_failed", "internal_error"})


class PosterCache:
    """A folder of posters named by TMDB id, with a manifest of failed fetches."""

    def __init__(self, directory: Path):
        self.dir = directory

    def path(self, tmdb_id: int) -> Path:
        """Where the poster of `tmdb_id` lives (whether or not it is there)."""
        return self.dir / f"{int(tmdb_id)}.jpg"

    def has(self, tmdb_id: int) -> bool:
        """Whether a non-empty poster file is cached for `tmdb_id`."""
        path = self.path(tmdb_id)
        return path.is_file() and path.stat().st_size > 0

    def write(self, tmdb_id: int, content: bytes) -> Path:
        """Store a poster atomically (temporary name, then rename)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(tmdb_id)
        tmp = self.dir / f".{path.name}.{uuid.uuid4().hex}"
        tmp.write_bytes(content)
        os.replace(tmp, path)
        return path

    def failures(self) -> dict[int, dict[str, str]]:
        """The manifest of failed fetches: tmdbId -> {code, detail, failed_at}."""
        path = self.dir / MANIFEST
        if not path.is_file():
            return {}
        try:
            return {int(k): v for k, v in json.loads(path.read_text("utf-8")).items()}
        except (ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
            return {}

    def write_failures(self, failures: dict[int, dict[str, str]]) -> Path:
        """Replace the manifest atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / MANIFEST
        tmp = self.dir / f".{MANIFEST}.{uuid.uuid4().hex}"
        entries = {str(k): v for k, v in sorted(failures.items())}
        tmp.write_text(json.dumps(entries, indent=1), "utf-8")
        os.replace(tmp, path)
        return path


@dataclass
class FetchReport:
    """What a fetch run did."""

    fetched: list[int] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)  # already there, not requested
    skipped: list[int] = field(default_factory=list)  # failed permanently before, not retried
    failed: dict[int, dict[str, str]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the log and the command's output."""
        codes: dict[str, int] = {}
        for failure in self.failed.values():
            codes[failure["code"]] = codes.get(failure["code"], 0) + 1
        reasons = ", ".join(f"{c} {n}" for c, n in sorted(codes.items())) or "none"
        return (
            f"{len(self.fetched)} fetched, {len(self.cached)} already cached, "
            f"{len(self.skipped)} skipped (failed before), {len(self.failed)} failed ({reasons})"
        )


def fetch_posters(
    tmdb_ids: Iterable[int],
    cache: PosterCache,
    fetch_settings: FetchSettings,
    retry_failed: bool = False,
    progress: ProgressMode | bool = "auto",
) -> FetchReport:
    """Fetch the posters missing from `cache` with the worker's `PosterFetcher`."""
    return asyncio.run(
        _fetch_all(
            list(dict.fromkeys(int(i) for i in tmdb_ids)),
            cache,
            fetch_settings,
            retry_failed,
            progress,
        )
    )


async def _fetch_all(
    tmdb_ids: list[int],
    cache: PosterCache,
    fetch_settings: FetchSettings,
    retry_failed: bool,
    progress: ProgressMode | bool,
) -> FetchReport:
    from poster_genres.posters import PosterError, PosterFetcher

    manifest = cache.failures()
    report, todo = _triage(tmdb_ids, cache, manifest, retry_failed)
    log.info("posters: %d cached, %d to fetch, %d skipped after a permanent failure",
             len(report.cached), len(todo), len(report.skipped))  # fmt: skip
    if not todo:
        cache.write_failures(manifest)
        return report
    limit = asyncio.Semaphore(fetch_settings.fetch_concurrency)

    async def one(fetcher: PosterFetcher, tmdb_id: int) -> None:
        """Fetch one poster into the cache, or record why it could not be."""
        async with limit:
            try:
                poster = await fetcher.fetch(tmdb_id)
            except PosterError as exc:
                failure = {"code": str(exc.code), "detail": exc.detail}
            except Exception as exc:  # noqa: BLE001 - recorded in the manifest, run continues
                failure = {"code": "internal_error", "detail": f"{type(exc).__name__}: {exc}"}
            else:
                await asyncio.to_thread(cache.write, tmdb_id, poster.content)
                manifest.pop(tmdb_id, None)
                report.fetched.append(tmdb_id)
                return
        failure["failed_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        manifest[tmdb_id] = failure
        report.failed[tmdb_id] = failure
        log.debug("poster %d failed: %s %s", tmdb_id, failure["code"], failure["detail"])

    try:
        async with PosterFetcher(fetch_settings) as fetcher:
            tasks = [asyncio.create_task(one(fetcher, t)) for t in todo]
            with Progress(len(tasks), "fetching posters", "poster", progress) as bar:
                for task in asyncio.as_completed(tasks):
                    await task
                    bar.update(1)
    finally:
        cache.write_failures(manifest)
    log.info("posters: %s", report.summary())
    return report


def _triage(
    tmdb_ids: list[int],
    cache: PosterCache,
    manifest: dict[int, dict[str, str]],
    retry_failed: bool,
) -> tuple[FetchReport, list[int]]:
    """Sort ids into cached, skipped (failed for good) and to fetch; cached leave `manifest`."""
    report = FetchReport()
    todo = []
    for tmdb_id in tmdb_ids:
        if cache.has(tmdb_id):
            report.cached.append(tmdb_id)
            manifest.pop(tmdb_id, None)
        elif (
            not retry_failed
            and tmdb_id in manifest
            and manifest[tmdb_id].get("code") not in RETRYABLE_CODES
        ):
            report.skipped.append(tmdb_id)
        else:
            todo.append(tmdb_id)
    return report, todo
