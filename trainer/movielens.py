"""MovieLens ingest: `movies.csv` + `links.csv` -> one table of movies, genres and TMDB ids.

Also downloads an official release (ml-latest-small by default), checks it against the
published MD5 and the expected files, and caches it unpacked.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pandas as pd

from poster_genres.trainer.errors import MovieLensError

if TYPE_CHECKING:
    from poster_genres.trainer.settings import MovieLensInput

log = logging.getLogger(__name__)

NO_GENRES = "(no genres listed)"
MOVIES_COLUMNS = ("movieId", "title", "genres")
LINKS_COLUMNS = ("movieId", "tmdbId")
DEFAULT_RELEASE = "ml-latest-small"
DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Movies:
    """All movies (`movieId`, `title`, `genres` as a list, `tmdbId` or <NA>), split by use."""

    table: pd.DataFrame

    @property
    def labelled(self) -> pd.DataFrame:
        """Movies with genres and a TMDB id: the training set."""
        t = self.table
        return t[t["genres"].map(len).gt(0) & t["tmdbId"].notna()]

    @property
    def unlabelled(self) -> pd.DataFrame:
        """Movies without genres but with a TMDB id: the ones to predict."""
        t = self.table
        return t[t["genres"].map(len).eq(0) & t["tmdbId"].notna()]

    def titles(self) -> dict[int, str]:
        """TMDB id -> title, for movies that have one."""
        t = self.table[self.table["tmdbId"].notna()]
        return dict(zip(t["tmdbId"].astype(int), t["title"], strict=True))


def without_genres(labelled: pd.DataFrame, excluded: Collection[str]) -> pd.DataFrame:
    """Labelled movies with the `excluded` genres taken out; those left with none are dropped."""
    if not excluded:
        return labelled
    drop = set(excluded)
    genres = labelled["genres"].map(lambda gs: [g for g in gs if g not in drop])
    kept = labelled.assign(genres=genres)[genres.map(len).gt(0)]
    if len(kept) < len(labelled):
        log.info(
            "%d movie(s) have no genre but %s: not used",
            len(labelled) - len(kept),
            ", ".join(sorted(drop)),
        )
    return kept


def genres_by_id(movies: pd.DataFrame) -> dict[int, list[str]]:
    """TMDB id -> MovieLens genres, from a table with `tmdbId` and `genres`."""
    return dict(zip(movies["tmdbId"].astype(int), map(list, movies["genres"]), strict=True))


def parse_genres(value: object) -> list[str]:
    """`Action|Comedy` -> ["Action", "Comedy"]; `(no genres listed)` or blank -> []."""
    if not isinstance(value, str):
        return []
    parts = [g.strip() for g in value.split("|")]
    return [g for g in dict.fromkeys(parts) if g and g != NO_GENRES]


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise MovieLensError(f"{path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MovieLensError(f"{path} is not a readable CSV file: {exc}") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MovieLensError(
            f"{path} lacks column(s) {', '.join(missing)} (has {', '.join(frame.columns)})"
        )
    return frame


def _ids(series: pd.Series, what: str, path: Path, allow_blank: bool) -> pd.Series:
    text = series.str.strip()
    numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
    given = numbers.notna()
    bad = (~given & (text != "")) | (given & ((numbers <= 0) | (numbers % 1 != 0)))
    if bad.any():
        examples = ", ".join(repr(v) for v in text[bad].head(3))
        raise MovieLensError(f"{path}: {int(bad.sum())} invalid {what} value(s), e.g. {examples}")
    if not allow_blank and numbers.isna().any():
        raise MovieLensError(f"{path}: {int(numbers.isna().sum())} blank {what} value(s)")
    return numbers.astype("Int64")


def read_movielens(directory: Path) -> Movies:
    """Read `movies.csv` and `links.csv` from a MovieLens folder into `Movies`."""
    movies_path, links_path = directory / "movies.csv", directory / "links.csv"
    movies = _read_csv(movies_path, MOVIES_COLUMNS)
    links = _read_csv(links_path, LINKS_COLUMNS)
    movies["movieId"] = _ids(movies["movieId"], "movieId", movies_path, allow_blank=False)
    links["movieId"] = _ids(links["movieId"], "movieId", links_path, allow_blank=False)
    links["tmdbId"] = _ids(links["tmdbId"], "tmdbId", links_path, allow_blank=True)
    if movies["movieId"].duplicated().any():
        raise MovieLensError(f"{movies_path}: duplicate movieId values")
    links = links.drop_duplicates("movieId")
    table = movies.loc[:, list(MOVIES_COLUMNS)].merge(
        links.loc[:, ["movieId", "tmdbId"]], on="movieId", how="left"
    )
    table["genres"] = table["genres"].map(parse_genres)
    table["tmdbId"] = table["tmdbId"].astype("Int64")
    # one movie per poster: when two movies share a TMDB id, keep the first
    shared = table["tmdbId"].notna() & table["tmdbId"].duplicated()
    if shared.any():
        log.warning(
            "%d movies share a TMDB id with an earlier one; keeping the first", shared.sum()
        )
        table = table[~shared]
    table = table.reset_index(drop=True)
    movies_out = Movies(table)
    log.info(
        "read %d movies from %s: %d labelled with a TMDB id, %d unlabelled with one, %d without",
        len(table),
        directory,
        len(movies_out.labelled),
        len(movies_out.unlabelled),
        int(table["tmdbId"].isna().sum()),
    )
    return movies_out


def load_movies(source: MovieLensInput) -> Movies:
    """Read the local MovieLens copy, or download (and cache) the release."""
    if source.movielens is not None:
        return read_movielens(source.movielens)
    if source.download:
        return read_movielens(
            download_movielens(source.cache_dir / "movielens", source.release, source.movielens_url)
        )
    raise MovieLensError("give --movielens DIR or --download")


def download_movielens(
    cache_dir: Path,
    release: str = DEFAULT_RELEASE,
    base_url: str = DEFAULT_BASE_URL,
    client: httpx.Client | None = None,
) -> Path:
    """Fetch `<release>.zip`, verify its MD5 and contents, unpack it under `cache_dir`.

    Returns the folder holding `movies.csv` and `links.csv`. A release already in the
    cache is not fetched again.
    """
    target = cache_dir / release
    if (target / "movies.csv").is_file() and (target / "links.csv").is_file():
        log.info("using cached MovieLens %s at %s", release, target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    own_client = client is None
    client = client or httpx.Client(
        timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True
    )
    zip_url = f"{base_url.rstrip('/')}/{release}.zip"
    tmp_zip = cache_dir / f".{release}.{uuid.uuid4().hex}.zip"
    try:
        try:
            md5_response = client.get(f"{zip_url}.md5")
            md5_response.raise_for_status()
            published = md5_response.text.strip()
            expected = published.split()[0].lower() if published else ""
            digest = hashlib.md5()
            with client.stream("GET", zip_url) as response:
                response.raise_for_status()
                with tmp_zip.open("wb") as out:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise MovieLensError(f"could not download {zip_url}: {exc}") from exc
        if len(expected) != 32 or digest.hexdigest() != expected:
            raise MovieLensError(
                f"{zip_url}: MD5 {digest.hexdigest()} does not match the published {expected!r}"
            )
        _unpack(tmp_zip, release, target)
    finally:
        tmp_zip.unlink(missing_ok=True)
        if own_client:
            client.close()
    log.info("downloaded MovieLens %s to %s", release, target)
    return target


def _unpack(archive: Path, release: str, target: Path) -> None:
    wanted = {"movies.csv", "links.csv"}
    tmp_dir = target.parent / f".{release}.{uuid.uuid4().hex}"
    try:
        with zipfile.ZipFile(archive) as zf:
            names = {Path(n).name: n for n in zf.namelist() if Path(n).name in wanted}
            if set(names) != wanted:
                missing = ", ".join(sorted(wanted - set(names)))
                raise MovieLensError(f"{archive.name} lacks {missing}")
            tmp_dir.mkdir(parents=True)
            for name, member in names.items():
                with zf.open(member) as src, (tmp_dir / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        read_movielens(tmp_dir)  # verify before publishing it in the cache
        shutil.rmtree(target, ignore_errors=True)
        tmp_dir.rename(target)
    except zipfile.BadZipFile as exc:
        raise MovieLensError(f"{archive.name} is not a zip archive: {exc}") from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
