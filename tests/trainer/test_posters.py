"""`fetch-posters`: the worker's fetcher against the loopback TMDB stand-in; resumable, with a manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from demo.synthetic import SyntheticDataset, draw_poster
from demo.tmdb import StandInMovie, TmdbStandIn, respond
from poster_genres.posters import FetchSettings
from poster_genres.trainer.posters import PosterCache, fetch_posters

from .conftest import small_movielens


def settings_for(server: TmdbStandIn, **extra: object) -> FetchSettings:
    return FetchSettings(
        tmdb_base_url=server.base_url,
        poster_hosts=[server.host],
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        fetch_attempts=2,
        **extra,
    )


def test_fetch_is_resumable_and_records_failures(tmp_path: Path) -> None:
    posters = {i: draw_poster(["Comedy"], seed=i) for i in range(1, 7)}
    movies = {i: StandInMovie(poster=p, title=f"Movie {i}") for i, p in posters.items()}
    movies[7] = StandInMovie(poster=None, title="No poster")  # a page without an image
    movies[8] = StandInMovie(poster=b"not an image", title="Broken poster")
    cache = PosterCache(tmp_path / "posters")
    cache.write(1, posters[1])  # already cached: must not be requested
    ids = [*range(1, 9), 99]  # 99: no such movie
    with TmdbStandIn(movies=movies) as server:
        report = fetch_posters(
            ids, cache, settings_for(server, fetch_concurrency=3), progress=False
        )
        first_requests = sum(server.requests.values())
        assert report.cached == [1]
        assert sorted(report.fetched) == [2, 3, 4, 5, 6]
        assert sorted(report.failed) == [7, 8, 99]
        for i in range(2, 7):
            assert cache.path(i).read_bytes() == posters[i]
        manifest = json.loads((cache.dir / "failures.json").read_text())
        assert manifest["99"]["code"] == "movie_not_found"
        assert manifest["7"]["code"] == "poster_not_found"
        assert manifest["8"]["code"] == "poster_unreadable"
        assert all(entry["detail"] for entry in manifest.values())

        # a second run fetches nothing: posters are cached, permanent failures skipped
        again = fetch_posters(ids, cache, settings_for(server), progress=False)
        assert sum(server.requests.values()) == first_requests
        assert sorted(again.cached) == [1, 2, 3, 4, 5, 6] and sorted(again.skipped) == [7, 8, 99]

        # the poster appears upstream: --retry-failed picks it up and clears the manifest entry
        server.movies[7] = StandInMovie(poster=posters[6], title="Poster now")
        retried = fetch_posters([7], cache, settings_for(server), retry_failed=True, progress=False)
        assert retried.fetched == [7]
        assert "7" not in json.loads((cache.dir / "failures.json").read_text())


def test_transient_failures_are_retried_on_the_next_run(tmp_path: Path) -> None:
    cache = PosterCache(tmp_path)
    flaky = StandInMovie(
        poster=draw_poster(["Drama"]), title="Flaky", image_failures=[503, 503, 503]
    )
    with TmdbStandIn(movies={5: flaky}) as server:
        first = fetch_posters([5], cache, settings_for(server), progress=False)
        assert first.failed[5]["code"] == "fetch_failed"
        second = fetch_posters(
            [5], cache, settings_for(server), progress=False
        )  # no --retry-failed
        assert second.fetched == [5] and cache.has(5)


def test_fetch_posters_command(synthetic: SyntheticDataset, tmp_path: Path) -> None:
    labelled = sorted(synthetic.labelled)[:12]
    served = {i: (synthetic.posters_dir / f"{i}.jpg").read_bytes() for i in labelled}
    # a MovieLens copy limited to the served movies plus one unlabelled movie
    movies = synthetic.movies_csv.read_text().splitlines()
    links = synthetic.links_csv.read_text().splitlines()
    keep_ids = set(map(str, labelled)) | {str(synthetic.unlabelled[0])}
    kept_links = [links[0]] + [line for line in links[1:] if line.split(",")[2] in keep_ids]
    kept_movie_ids = {line.split(",")[0] for line in kept_links[1:]}
    root = tmp_path / "ml"
    root.mkdir()
    (root / "links.csv").write_text("\n".join(kept_links) + "\n")
    (root / "movies.csv").write_text(
        "\n".join([movies[0]] + [m for m in movies[1:] if m.split(",")[0] in kept_movie_ids]) + "\n"
    )
    with TmdbStandIn(posters=served) as server:
        env = dict(os.environ, TMDB_BASE_URL=server.base_url, POSTER_HOSTS=server.host)
        cmd = [
            sys.executable,
            "-m",
            "poster_genres.trainer",
            "fetch-posters",
            "--movielens",
            str(root),
            "--posters",
            str(tmp_path / "posters"),
            "--concurrency",
            "4",
            "--no-progress",
        ]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "12 fetched" in result.stdout
        assert sorted(int(p.stem) for p in (tmp_path / "posters").glob("*.jpg")) == labelled
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert "0 fetched, 12 already cached" in again.stdout


@pytest.mark.parametrize(("level", "fmt"), [("DEBUG", "plain"), ("INFO", "json")])
def test_the_api_key_is_in_no_log_line(
    synthetic: SyntheticDataset, tmp_path: Path, level: str, fmt: str
) -> None:
    """`fetch-posters` in API mode, as a process with its own logging set-up: the key is masked."""
    key = "k3y-fake-0123456789-TRAINERSECRET"
    ids = small_movielens(synthetic, tmp_path / "ml", 4)
    served = {i: (synthetic.posters_dir / f"{i}.jpg").read_bytes() for i in ids}
    with TmdbStandIn(posters=served) as server:
        asked: list[str] = []

        def api(handler: BaseHTTPRequestHandler) -> None:
            asked.append(handler.path)
            tmdb_id = handler.path.split("?")[0].rsplit("/", 1)[-1]
            body = json.dumps({"id": int(tmdb_id), "poster_path": f"/{tmdb_id}.jpg"}).encode()
            respond(handler, 200, body, "application/json")

        for i in ids:
            server.routes[f"/3/movie/{i}"] = api
        env = dict(
            os.environ,
            TMDB_API_KEY=key,
            TMDB_BASE_URL=server.base_url,
            TMDB_API_URL=f"{server.base_url}/3",
            TMDB_IMAGE_BASE_URL=f"{server.base_url}/t/p/w500",
            POSTER_HOSTS=server.host,
            LOG_FORMAT=fmt,
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "poster_genres.trainer",
                "fetch-posters",
                "--movielens",
                str(tmp_path / "ml"),
                "--posters",
                str(tmp_path / "posters"),
                "--no-progress",
                "--log-level",
                level,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "4 fetched" in result.stdout
    assert len(asked) == 4 and all(f"api_key={key}" in path for path in asked)  # the API was used
    lines = result.stderr.splitlines()
    assert lines and not [line for line in lines if key in line]
    if level == "DEBUG":  # httpx logs every request URL at this level: masked, not dropped
        assert any("/3/movie/" in line and "api_key=***" in line for line in lines), lines
