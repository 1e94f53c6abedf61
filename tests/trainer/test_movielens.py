"""MovieLens parsing edge cases and the verified, cached download."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import httpx
import pytest

from poster_genres.trainer.movielens import (
    MovieLensError,
    download_movielens,
    parse_genres,
    read_movielens,
)

MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    '12,"The ""Quoted"" One (2001)",Drama\n'
    "13,Nothing Known (2020),(no genres listed)\n"
    "14,No Link (1999),Horror\n"
    "15,Blank Tmdb (1998),Action\n"
)
LINKS = "movieId,imdbId,tmdbId\n1,0114709,862\n11,0112346,9087\n12,0000012,77\n13,0000013,555\n15,0000015,\n"


def write(root: Path, movies: str = MOVIES, links: str = LINKS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "movies.csv").write_text(movies, "utf-8")
    (root / "links.csv").write_text(links, "utf-8")
    return root


def test_parse_genres() -> None:
    assert parse_genres("Action|Comedy") == ["Action", "Comedy"]
    assert parse_genres("(no genres listed)") == []
    assert parse_genres("") == []
    assert parse_genres("Drama|Drama| Crime ") == ["Drama", "Crime"]


def test_read_movielens_edge_cases(tmp_path: Path) -> None:
    movies = read_movielens(write(tmp_path))
    table = movies.table.set_index("movieId")
    assert table.loc[11, "title"] == "American President, The (1995)"
    assert table.loc[12, "title"] == 'The "Quoted" One (2001)'
    assert table.loc[1, "genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert sorted(movies.labelled["movieId"]) == [1, 11, 12]  # genres and a TMDB id
    assert list(movies.unlabelled["tmdbId"]) == [555]  # (no genres listed)
    assert table["tmdbId"].isna().sum() == 2  # no links row, blank tmdbId
    assert movies.titles()[9087] == "American President, The (1995)"


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path, links="movieId,imdbId\n1,0114709\n")
    with pytest.raises(MovieLensError, match="lacks column.*tmdbId"):
        read_movielens(tmp_path)


def test_invalid_ids_and_missing_files(tmp_path: Path) -> None:
    write(tmp_path, links="movieId,imdbId,tmdbId\n1,0114709,abc\n")
    with pytest.raises(MovieLensError, match="invalid tmdbId"):
        read_movielens(tmp_path)
    with pytest.raises(MovieLensError, match="does not exist"):
        read_movielens(tmp_path / "nowhere")


def _release_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-test/movies.csv", MOVIES)
        zf.writestr("ml-test/links.csv", LINKS)
        zf.writestr("ml-test/ratings.csv", "userId,movieId,rating,timestamp\n")
    return buffer.getvalue()


def _server(archive: bytes, md5: str, calls: list[str]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith(".zip.md5"):
            return httpx.Response(200, text=f"{md5}  ml-test.zip\n")
        if request.url.path.endswith(".zip"):
            return httpx.Response(200, content=archive)
        return httpx.Response(404)

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_download_verifies_and_caches(tmp_path: Path) -> None:
    archive = _release_zip()
    calls: list[str] = []
    client = _server(archive, hashlib.md5(archive).hexdigest(), calls)
    folder = download_movielens(tmp_path, "ml-test", "https://files.example/datasets", client)
    assert len(read_movielens(folder).labelled) == 3
    assert calls == ["/datasets/ml-test.zip.md5", "/datasets/ml-test.zip"]
    assert (
        download_movielens(tmp_path, "ml-test", "https://files.example/datasets", client) == folder
    )
    assert len(calls) == 2  # served from the cache the second time


def test_download_rejects_a_bad_checksum(tmp_path: Path) -> None:
    client = _server(_release_zip(), "0" * 32, [])
    with pytest.raises(MovieLensError, match="MD5"):
        download_movielens(tmp_path, "ml-test", "https://files.example/datasets", client)
    assert not (tmp_path / "ml-test").exists()
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers
