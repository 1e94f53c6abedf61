"""Unit tests of poster finding: page shapes, allowlist, retry decisions, image checks."""

from __future__ import annotations

import asyncio
import io
import time
from functools import partial
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from demo.tmdb import StandInMovie, TmdbStandIn, respond
from poster_genres.posters import (
    FetchFailed,
    FetchSettings,
    HostNotAllowed,
    InvalidURL,
    MovieNotFound,
    Poster,
    PosterFetcher,
    PosterNotFound,
    PosterTooLarge,
    PosterUnreadable,
)
from poster_genres.posters.fetcher import allowlist_of
from poster_genres.posters.http.urls import Allowlist
from poster_genres.posters.policy.pacing import HostPacer, TokenBucket
from poster_genres.posters.policy.retry import backoff_delay, parse_retry_after
from poster_genres.posters.tmdb.images import inspect_image, with_rendition
from poster_genres.posters.tmdb.scrape import HeadWatch, poster_candidates

PAGE = "https://www.themoviedb.org/movie/603-the-matrix"

NEW_LAYOUT = """<html><head>
<meta property="og:title" content="The Matrix">
<meta property="og:image" content="https://image.tmdb.org/t/p/w780/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg">
</head><body><div class="poster"><img class="poster w-full"
 src="https://media.themoviedb.org/t/p/w300_and_h450_bestv2/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"
 srcset="https://media.themoviedb.org/t/p/w300_and_h450_bestv2/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg 1x,
         https://media.themoviedb.org/t/p/w600_and_h900_bestv2/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg 2x"></div>
</body></html>"""

IMG_ONLY = NEW_LAYOUT.replace('<meta property="og:image"', '<meta property="og:other"')

OLD_LAYOUT = """<html><body><div class="image_content">
<img class="lazyload" data-src="/t/p/w600_and_h900_bestv2/old.jpg" src="/assets/placeholder.svg"></div></body></html>"""

NO_POSTER = """<html><head><meta property="og:image"
 content="https://www.themoviedb.org/assets/2/v4/logos/v2/blue_square_2.svg"></head>
<body><div class="image_content"><div class="no_image_holder w500"></div></div></body></html>"""

OG_ELSEWHERE = """<html><head><meta property="og:image" content="https://cdn.example.com/share.jpg"></head>
<body></body></html>"""


def test_new_layout_prefers_og_image_then_srcset_2x_then_src():
    urls = poster_candidates(NEW_LAYOUT, PAGE)
    assert urls[0] == "https://image.tmdb.org/t/p/w780/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"
    assert urls[1].startswith("https://media.themoviedb.org/t/p/w600_and_h900_bestv2/")
    assert urls[2].startswith("https://media.themoviedb.org/t/p/w300_and_h450_bestv2/")


def test_img_poster_without_og_image_takes_the_2x_source():
    assert poster_candidates(IMG_ONLY, PAGE)[0].startswith(
        "https://media.themoviedb.org/t/p/w600_and_h900"
    )


def test_old_layout_data_src_is_made_absolute():
    assert poster_candidates(OLD_LAYOUT, PAGE) == [
        "https://www.themoviedb.org/t/p/w600_and_h900_bestv2/old.jpg"
    ]


def test_a_page_without_poster_gives_nothing_not_the_site_logo():
    assert poster_candidates(NO_POSTER, PAGE) == []


def test_og_image_elsewhere_is_a_candidate_that_the_allowlist_refuses():
    urls = poster_candidates(OG_ELSEWHERE, PAGE)
    assert urls == ["https://cdn.example.com/share.jpg"]
    assert not allowlist_of(FetchSettings()).allows(urls[0])


def test_allowlist_hosts_ports_and_schemes():
    allow = Allowlist(["www.themoviedb.org", "image.tmdb.org", "127.0.0.1:8080", "[::1]:9000"])
    assert allow.allows("https://image.tmdb.org/t/p/w500/x.jpg")
    assert allow.allows("http://IMAGE.tmdb.org/x.jpg")
    assert not allow.allows("https://image.tmdb.org:8443/x.jpg")
    assert not allow.allows("https://evil.tmdb.org.example.com/x.jpg")
    assert not allow.allows("https://user@image.tmdb.org/x.jpg")
    assert allow.allows("http://127.0.0.1:8080/movie/1")
    assert not allow.allows("http://127.0.0.1:8081/movie/1")
    assert not allow.allows("http://127.0.0.1/movie/1")
    assert allow.allows("http://[::1]:9000/x")
    assert not allow.allows("file:///etc/passwd")
    assert not allow.allows("ftp://image.tmdb.org/x.jpg")


def test_allowlist_from_settings_includes_the_site_and_its_port():
    settings = FetchSettings(
        tmdb_base_url="http://127.0.0.1:5555", poster_hosts="a.example, b.example:81"
    )
    allow = allowlist_of(settings)
    assert allow.allows("http://127.0.0.1:5555/movie/1")
    assert allow.allows("https://a.example/x") and allow.allows("http://b.example:81/x")
    assert not allow.allows("https://api.themoviedb.org/3/movie/1")  # only with an API key


def test_backoff_grows_is_capped_and_honours_retry_after():
    assert backoff_delay(1, 0.5, 30, rand=0.0) == pytest.approx(0.25)
    assert backoff_delay(1, 0.5, 30, rand=1.0) == pytest.approx(0.5)
    assert backoff_delay(4, 0.5, 30, rand=1.0) == pytest.approx(4.0)
    assert backoff_delay(20, 0.5, 30, rand=1.0) == pytest.approx(30.0)
    assert backoff_delay(1, 0.5, 30, retry_after=7, rand=0.5) == pytest.approx(7.0)


def test_retry_after_seconds_and_http_dates():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(
        10.0
    )
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def _image(fmt: str, size: tuple[int, int] = (20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, fmt)
    return buffer.getvalue()


def test_inspect_image_accepts_posters_and_refuses_the_rest():
    assert inspect_image(_image("JPEG"), 10_000) == ("JPEG", 20, 30)
    assert inspect_image(_image("PNG"), 10_000)[0] == "PNG"
    assert inspect_image(_image("WEBP"), 10_000)[0] == "WEBP"
    with pytest.raises(PosterTooLarge):
        inspect_image(_image("PNG", (200, 200)), 10_000)
    with pytest.raises(PosterUnreadable):
        inspect_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>", 10_000)
    with pytest.raises(PosterUnreadable):
        inspect_image(_image("TIFF"), 10_000)


def _fetch(handler, tmdb_id: int = 603, **settings):
    async def run():
        config = FetchSettings(backoff_base_s=0.001, backoff_max_s=0.01, **settings)
        async with PosterFetcher(config, transport=httpx.MockTransport(handler)) as fetcher:
            return await fetcher.fetch(tmdb_id), fetcher.retries

    return asyncio.run(run())


def _site(statuses: list[int], image: bytes | None = None, headers: dict[str, str] | None = None):
    calls: list[str] = []
    jpeg = image or _image("JPEG")

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.host == "www.themoviedb.org":
            if statuses:
                return httpx.Response(statuses.pop(0), headers=headers or {})
            return httpx.Response(200, html=NEW_LAYOUT)
        return httpx.Response(200, content=jpeg, headers={"content-type": "image/jpeg"})

    return handler, calls


def test_transient_statuses_are_retried_then_succeed():
    handler, calls = _site([503, 429, 502])
    poster, retries = _fetch(handler)
    assert poster.width == 20 and retries == 3
    assert calls.count("/movie/603") == 4
    assert poster.attempts == 5


def test_retries_run_out_as_fetch_failed():
    handler, calls = _site([503] * 10)
    with pytest.raises(FetchFailed) as info:
        _fetch(handler, fetch_attempts=3)
    assert calls.count("/movie/603") == 3 and info.value.attempts == 3


def test_a_retry_after_beyond_the_deadline_gives_up_at_once():
    handler, calls = _site([429] * 5, headers={"Retry-After": "3600"})
    with pytest.raises(FetchFailed):
        _fetch(handler, fetch_deadline_s=5)
    assert calls.count("/movie/603") == 1


def test_permanent_statuses_are_not_retried():
    handler, calls = _site([404])
    with pytest.raises(MovieNotFound):
        _fetch(handler)
    assert calls == ["/movie/603"]


def test_a_redirect_off_the_allowlist_is_refused_before_it_is_followed():
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data"})

    with pytest.raises(HostNotAllowed):
        _fetch(handler)
    assert calls == ["https://www.themoviedb.org/movie/603?language=en-US"]


def test_an_image_over_the_byte_cap_is_refused():
    handler, _ = _site([], image=_image("PNG", (300, 300)) + b"\0" * 50_000)
    with pytest.raises(PosterTooLarge):
        _fetch(handler, max_image_bytes=20_000)


def test_no_poster_on_the_page():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, html=NO_POSTER)

    with pytest.raises(PosterNotFound):
        _fetch(handler)


def test_control_characters_in_a_page_do_not_break_extraction():
    page = NEW_LAYOUT.replace("<body>", "<body>\x00\x1f\x0b", 1).replace(
        'class="poster w-full"', 'class="poster w-full"\x1f'
    )
    assert (
        poster_candidates(page, PAGE)[0]
        == "https://image.tmdb.org/t/p/w780/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"
    )


def test_the_locale_language_variable_does_not_leak_into_requests(monkeypatch):
    monkeypatch.setenv("LANGUAGE", "de_DE:de")
    assert FetchSettings().tmdb_language == "en-US"
    monkeypatch.setenv("TMDB_LANGUAGE", "fr-FR")
    assert FetchSettings().tmdb_language == "fr-FR"


def _page_with_og(url: str, img_src: str | None = None) -> str:
    img = f'<img class="poster" src="{img_src}">' if img_src else ""
    return f'<html><head><meta property="og:image" content="{url}"></head><body>{img}</body></html>'


@pytest.mark.parametrize(
    "bad",
    [
        "https://image.tmdb.org/t/p/w500/a\x7fb.jpg",  # DEL
        "https://image.tmdb.org:99999/t/p/w500/a.jpg",  # a port out of range
        "https://[::1/t/p/w500/a.jpg",  # a broken IPv6 literal
        "https://xn--/t/p/w500/a.jpg",  # a malformed international name
    ],
)
def test_candidates_that_are_not_valid_urls_are_skipped(bad: str) -> None:
    good = "https://image.tmdb.org/t/p/w500/good.jpg"
    assert poster_candidates(_page_with_og(bad, good), PAGE) == [good]
    assert poster_candidates(_page_with_og(bad), PAGE) == []


def test_a_page_whose_only_poster_url_is_invalid_has_no_poster():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, html=_page_with_og("https://image.tmdb.org/t/p/w500/a\x7f.jpg"))

    with pytest.raises(PosterNotFound, match="no poster on"):
        _fetch(handler)


def test_an_api_poster_path_that_is_not_a_valid_url_is_invalid_url():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"poster_path": "/a\x7fb.jpg"})

    with pytest.raises(InvalidURL) as info:
        _fetch(handler, tmdb_api_key="k3y")
    assert info.value.code == "invalid_url" and info.value.attempts == 2  # the API, then refused


def test_a_redirect_to_an_invalid_url_is_invalid_url_at_once(tmdb: TmdbStandIn):
    locations = {
        1: "/movie/1-bad\x7fslug",
        2: "http://127.0.0.1:99999/movie/2",
        3: "http://[::1/movie/3",
        4: "http://xn--/movie/4",
    }
    for tmdb_id, location in locations.items():
        tmdb.routes[f"/movie/{tmdb_id}"] = partial(
            respond, status=302, body=b"", content_type="text/html", headers={"Location": location}
        )
    settings = FetchSettings(
        tmdb_base_url=tmdb.base_url, poster_hosts=[tmdb.host], backoff_base_s=0.001
    )

    async def run() -> list[object]:
        async with PosterFetcher(settings) as fetcher:
            return await asyncio.gather(*map(fetcher.fetch, locations), return_exceptions=True)

    for tmdb_id, result in zip(locations, asyncio.run(run()), strict=True):
        assert isinstance(result, InvalidURL), (tmdb_id, result)
        assert result.code == "invalid_url" and result.attempts == 1
        assert "redirects to an invalid URL" in result.detail
        assert tmdb.requests[f"/movie/{tmdb_id}"] == 1  # not retried


def test_a_steady_stream_of_posters_reuses_a_steady_set_of_connections(tmdb: TmdbStandIn):
    """200 posters (600 requests: slug redirect, page, image on a second host name) at
    concurrency 8 open no more connections than the pool holds (2 x 8)."""
    image = _image("JPEG")
    port = tmdb.host.rsplit(":", 1)[1]
    for tmdb_id in range(1, 201):
        url = f"http://images.test:{port}/t/p/w500/{tmdb_id}.jpg"
        tmdb.movies[tmdb_id] = StandInMovie(image, title=f"Movie {tmdb_id}", poster_url=url)
    settings = FetchSettings(
        tmdb_base_url=tmdb.base_url,
        poster_hosts=[f"images.test:{port}"],
        fetch_concurrency=8,
        site_rate_limit=0,  # no pause between requests: connections are what is measured
        image_rate_limit=0,
    )

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async def run() -> tuple[list[object], int]:
        async with PosterFetcher(settings, resolver=loopback) as fetcher:
            limit = asyncio.Semaphore(32)  # a worker's batch at a time

            async def one(tmdb_id: int) -> object:
                async with limit:
                    return await fetcher.fetch(tmdb_id)

            results = await asyncio.gather(*map(one, range(1, 201)), return_exceptions=True)
            return results, fetcher.stats().connections_opened

    results, opened = asyncio.run(run())
    assert all(not isinstance(r, Exception) for r in results), results[:3]
    assert sum(tmdb.requests.values()) == 600
    assert 1 <= opened <= 16, f"{opened} connections for 600 requests"


def test_head_watch_says_enough_once_the_head_names_an_allowed_og_image():
    allow = Allowlist(["image.tmdb.org"]).allows
    watch = HeadWatch(PAGE, "utf-8", allow)
    page = NEW_LAYOUT.encode()
    cut = page.index(b"</head>") + 3  # "</head>" split across two pieces
    assert [watch.feed(page[:40]), watch.feed(page[40:cut]), watch.feed(page[cut:])] == [
        False,
        False,
        True,
    ]
    off_list = HeadWatch(PAGE, "utf-8", allow)
    assert not off_list.feed(OG_ELSEWHERE.encode()) and off_list.done
    no_og = HeadWatch(PAGE, None, allow)
    assert not no_og.feed(IMG_ONLY.encode()) and no_og.done
    no_head_tag = HeadWatch(PAGE, None, allow)  # the head ends where the body begins
    assert no_head_tag.feed(NEW_LAYOUT.replace("</head>", "").encode())


class SlowTail:
    """A movie page: its head (with og:image) at once, then `total` bytes of body, slowly."""

    def __init__(self, head: str, total: int = 20 * 1024 * 1024, chunk: int = 16 * 1024):
        self.head, self.total, self.chunk = head.encode(), total, chunk
        self.sent = 0

    def __call__(self, h: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html; charset=utf-8")
        h.send_header("Connection", "close")  # no length: the body runs until the server stops
        h.end_headers()
        h.close_connection = True
        try:
            h.wfile.write(self.head + b"<body>")
            while self.sent < self.total:
                h.wfile.write(b"<p>" + b"x" * self.chunk + b"</p>")
                h.wfile.flush()
                self.sent += self.chunk
                time.sleep(0.05)
        except OSError:  # the client hung up, as it should
            pass


def test_a_page_is_read_only_up_to_a_head_that_names_the_poster(tmdb: TmdbStandIn):
    tmdb.movies[901] = StandInMovie(_image("JPEG"))
    head = f'<html><head><meta property="og:image" content="{tmdb.image_url(901)}"></head>'
    tmdb.routes["/movie/901"] = tail = SlowTail(head)
    settings = FetchSettings(tmdb_base_url=tmdb.base_url, poster_hosts=[tmdb.host])

    async def run() -> Poster:
        async with PosterFetcher(settings) as fetcher:
            return await fetcher.fetch(901)

    began = time.monotonic()
    poster = asyncio.run(run())
    assert poster.url == tmdb.image_url(901).replace("/w500/", "/w342/")
    assert tail.sent < 512 * 1024, f"{tail.sent} bytes of the page were sent"
    assert time.monotonic() - began < 3


def test_pages_without_a_usable_og_image_are_read_in_full_and_every_layout_works(tmdb: TmdbStandIn):
    image = _image("JPEG")
    for tmdb_id, layout in ((1, "og"), (2, "img"), (3, "old")):
        tmdb.movies[tmdb_id] = StandInMovie(image, layout=layout)
    body_poster = f'<img class="poster" src="{tmdb.image_url(4)}">' + "<p>filler</p>" * 20_000
    tmdb.movies[4] = StandInMovie(image)
    tmdb.routes["/movie/4"] = partial(  # og:image off the allowlist; the poster after 250 KB
        respond,
        status=200,
        content_type="text/html",
        body=(OG_ELSEWHERE.replace("<body>", "<body>" + body_poster)).encode(),
    )
    settings = FetchSettings(tmdb_base_url=tmdb.base_url, poster_hosts=[tmdb.host])

    async def run() -> list[Poster]:
        async with PosterFetcher(settings) as fetcher:
            return [await fetcher.fetch(tmdb_id) for tmdb_id in (1, 2, 3, 4)]

    posters = asyncio.run(run())
    urls = [tmdb.image_url(i).replace("/w500/", "/w342/") for i in (1, 2, 3, 4)]
    assert [p.url for p in posters] == urls


@pytest.mark.parametrize(
    "url,expected",
    [
        ("https://image.tmdb.org/t/p/w780/f89U3.jpg", "https://image.tmdb.org/t/p/w342/f89U3.jpg"),
        ("https://image.tmdb.org/t/p/original/a.png", "https://image.tmdb.org/t/p/w342/a.png"),
        (
            "https://media.themoviedb.org/t/p/w600_and_h900_bestv2/f89U3.jpg",
            "https://media.themoviedb.org/t/p/w342/f89U3.jpg",
        ),
        ("http://127.0.0.1:8080/t/p/w500/1.jpg?x=1", "http://127.0.0.1:8080/t/p/w342/1.jpg?x=1"),
        ("https://cdn.example.com/share.jpg", "https://cdn.example.com/share.jpg"),
        ("https://image.tmdb.org/t/p/w500/dir/a.jpg", "https://image.tmdb.org/t/p/w500/dir/a.jpg"),
        ("https://image.tmdb.org/img/t/p/w500/a.jpg", "https://image.tmdb.org/img/t/p/w500/a.jpg"),
        ("https://image.tmdb.org/t/p/large/a.jpg", "https://image.tmdb.org/t/p/large/a.jpg"),
    ],
)
def test_the_rendition_rewrites_only_tmdb_shaped_image_urls(url: str, expected: str) -> None:
    assert with_rendition(url, "w342") == expected
    assert with_rendition(url, "") == url


def _images_asked(page: str | None = None, **settings: Any) -> tuple[Poster, list[str]]:
    """Fetch movie 603 from a site answering `page` (or from the API); the image paths asked."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host in ("www.themoviedb.org", "api.themoviedb.org"):
            if page is None:
                return httpx.Response(200, json={"poster_path": "/f89U3.jpg"})
            return httpx.Response(200, html=page)
        asked.append(request.url.path)
        return httpx.Response(200, content=_image("JPEG"), headers={"content-type": "image/jpeg"})

    poster, _ = _fetch(handler, **settings)
    return poster, asked


def test_the_poster_rendition_is_asked_for_og_image_srcset_and_the_api():
    poster, asked = _images_asked(NEW_LAYOUT)  # og:image w780
    assert asked == ["/t/p/w342/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"]
    assert poster.url == "https://image.tmdb.org/t/p/w342/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"
    _, asked = _images_asked(IMG_ONLY)  # srcset 2x: w600_and_h900_bestv2
    assert asked == ["/t/p/w342/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"]
    _, asked = _images_asked(None, tmdb_api_key="k3y")  # TMDB_IMAGE_BASE_URL ends in /w500
    assert asked == ["/t/p/w342/f89U3.jpg"]
    _, asked = _images_asked(NEW_LAYOUT, poster_rendition="original")
    assert asked == ["/t/p/original/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"]
    _, asked = _images_asked(NEW_LAYOUT, poster_rendition="")  # as the page names it
    assert asked == ["/t/p/w780/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"]


def test_the_poster_rendition_setting(monkeypatch):
    assert FetchSettings().poster_rendition == "w342"
    monkeypatch.setenv("POSTER_RENDITION", "w185")
    assert FetchSettings().poster_rendition == "w185"
    for bad in ("w342/../x", "342", "W342", "w"):
        with pytest.raises(ValidationError):
            FetchSettings(poster_rendition=bad)


def test_the_token_bucket_spends_its_burst_then_spaces_requests_at_the_rate():
    clock = {"t": 100.0}
    bucket = TokenBucket(rate=4.0, burst=2, clock=lambda: clock["t"])
    assert [bucket.reserve() for _ in range(5)] == pytest.approx([0, 0, 0.25, 0.5, 0.75])
    clock["t"] += 0.75  # the reserved tokens come due; none is saved up
    assert bucket.reserve() == pytest.approx(0.25)
    clock["t"] += 10  # a quiet spell saves up no more than the burst
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0, 0.25])


def test_each_host_has_its_own_bucket_and_the_site_the_lower_rate():
    clock = {"t": 0.0}
    settings = FetchSettings(site_rate_limit=2, image_rate_limit=10, rate_limit_burst=1)
    pacer = HostPacer(settings, clock=lambda: clock["t"])
    site = "https://www.themoviedb.org/movie/1"
    image = "https://image.tmdb.org/t/p/w342/a.jpg"
    assert [pacer.reserve(site) for _ in range(3)] == pytest.approx([0, 0.5, 1.0])
    assert [pacer.reserve(image) for _ in range(3)] == pytest.approx([0, 0.1, 0.2])
    assert pacer.reserve("https://media.themoviedb.org/a.jpg") == 0  # a bucket of its own
    assert (pacer.waits, pacer.waited_s) == (4, pytest.approx(1.8))  # for the worker's metrics
    unlimited = HostPacer(FetchSettings(site_rate_limit=0), clock=lambda: clock["t"])
    assert [unlimited.reserve(site) for _ in range(10)] == [0] * 10


def test_requests_wait_for_the_rate_limit_without_using_tries_or_the_request_timeout():
    handler, calls = _site([])
    settings = FetchSettings(
        site_rate_limit=10, rate_limit_burst=1, request_timeout_s=0.2, backoff_base_s=0.001
    )

    async def run() -> tuple[list[Poster], int]:
        async with PosterFetcher(settings, transport=httpx.MockTransport(handler)) as fetcher:
            posters = await asyncio.gather(*(fetcher.fetch(i) for i in range(1, 7)))
            return posters, fetcher.retries

    began = time.monotonic()
    posters, retries = asyncio.run(run())
    took = time.monotonic() - began
    assert calls.count("/movie/1") == 1 and len(calls) == 12  # 6 pages, 6 images
    assert took >= 0.5, f"6 page requests at 10/s (a burst of 1) took {took:.2f} s"
    assert retries == 0 and [p.attempts for p in posters] == [2] * 6
