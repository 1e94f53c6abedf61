"""Pages in the site's own layout: relative paths, a backdrop, a lazy poster, pt-BR genres."""

from __future__ import annotations

import asyncio
import re

from demo.site_layout import PT_BR, site_page
from demo.tmdb import StandInMovie, TmdbStandIn, not_the_poster
from poster_genres.posters import FetchSettings, Poster, PosterFetcher
from poster_genres.posters.tmdb.scrape import poster_candidates
from tests.fixtures import COLOURS, poster_bytes

SITE = "https://www.themoviedb.org"


def _fetch(settings: FetchSettings, tmdb_id: int) -> Poster:
    async def run() -> Poster:
        async with PosterFetcher(settings) as fetcher:
            return await fetcher.fetch(tmdb_id)

    return asyncio.run(run())


def test_a_site_relative_poster_comes_from_the_image_host_and_the_site_serves_pages_only():
    poster = poster_bytes(COLOURS["Blue"])
    movie = StandInMovie(poster, title="Matrix", layout="site", genres=["Action", "Drama"])
    with TmdbStandIn({603: movie}) as site, TmdbStandIn({603: movie}) as images:
        settings = FetchSettings(
            tmdb_base_url=site.base_url,
            tmdb_image_base_url=f"{images.base_url}/t/p/w500",
            poster_hosts=[],
        )
        got = _fetch(settings, 603)
        assert got.content == poster  # not the backdrop, not the placeholder
        assert got.url == f"{images.base_url}/t/p/w342/603.jpg"
        assert got.page_genres == ("Action", "Drama")  # from pt-BR names, by their ids
        assert sum(site.requests.values()) == 2  # the slug redirect and the page
        assert not any(path.startswith("/t/p/") for path in site.requests)
        assert dict(images.requests) == {"/t/p/w342/603.jpg": 1}


def test_the_lazy_poster_is_read_from_data_attributes_and_never_the_placeholder():
    page = site_page("Matrix", "/t/p/w500/603.jpg", [(28, PT_BR["Action"])])
    without_og = re.sub(r'<meta property="og:image"[^>]*>', "", page)
    urls = poster_candidates(without_og, f"{SITE}/movie/603-matrix")
    assert urls[0] == f"{SITE}/t/p/w600_and_h900_bestv2/603.jpg"  # data-srcset 2x first
    assert f"{SITE}/t/p/w300_and_h450_bestv2/603.jpg" in urls  # then data-src
    assert not any("_filter(" in url for url in urls)


def test_with_two_og_images_the_first_the_poster_is_chosen():
    page = site_page("Matrix", "/t/p/w500/603.jpg", [])
    assert page.count('property="og:image"') == 2
    assert poster_candidates(page, f"{SITE}/movie/603")[0] == f"{SITE}/t/p/w500/603.jpg"


def test_a_page_whose_only_poster_is_a_placeholder_has_none():
    page = '<img class="poster" src="/t/p/w300_and_h450_bestv2_filter(blur)/1.jpg">'
    assert poster_candidates(page, f"{SITE}/movie/1") == []


def test_only_site_relative_tmdb_images_move_to_the_image_host():
    images = "https://image.tmdb.org"
    page = f"{SITE}/movie/1"
    for raw, expected in (
        ("/t/p/w500/a.jpg", "https://image.tmdb.org/t/p/w500/a.jpg"),
        (f"{SITE}/t/p/w500/a.jpg", f"{SITE}/t/p/w500/a.jpg"),  # written whole: kept
        ("/images/a.jpg", f"{SITE}/images/a.jpg"),  # not a TMDB image path
        ("/t/p/w500/dir/a.jpg", f"{SITE}/t/p/w500/dir/a.jpg"),
    ):
        html = f'<meta property="og:image" content="{raw}">'
        assert poster_candidates(html, page, images) == [expected], raw
        assert poster_candidates(html, page) == [f"{SITE}{raw}" if raw[0] == "/" else raw]


def test_the_stand_in_serves_placeholders_and_backdrops_as_another_image():
    poster = poster_bytes(COLOURS["Red"])
    with TmdbStandIn({7: StandInMovie(poster, layout="site")}) as site:
        settings = FetchSettings(
            tmdb_base_url=site.base_url,
            tmdb_image_base_url=f"{site.base_url}/t/p/w500",
            poster_rendition="",
        )
        assert _fetch(settings, 7).content == poster
    assert not_the_poster() != poster
