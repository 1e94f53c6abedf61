"""Property-based tests: event parsing and poster extraction never fail in unplanned ways."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poster_genres.posters.http.urls import (
    MAX_URL_LENGTH,
    Allowlist,
    InvalidTarget,
    display_url,
    host_key,
    join_url,
    parse_target,
)
from poster_genres.posters.tmdb.genres import HEAD_END
from poster_genres.posters.tmdb.scrape import HeadWatch, og_image_of, poster_candidates
from poster_genres.schemas.events import MAX_TMDB_ID, EventDecodeError, NewMovie, decode_new_movie

PAGE = "https://www.themoviedb.org/movie/603-the-matrix?language=en-US"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
event_like = st.dictionaries(
    st.sampled_from(["tmdb_id", "event_id", "title", "occurred_at", "schema_version", "other"])
    | st.text(max_size=6),
    json_values,
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_decoding_arbitrary_bytes_raises_only_event_decode_errors(raw: bytes) -> None:
    try:
        event = decode_new_movie(raw)
    except EventDecodeError as exc:
        assert str(exc)
    else:
        assert 0 < event.tmdb_id <= MAX_TMDB_ID


@settings(max_examples=400, deadline=None)
@given(event_like)
def test_decoding_arbitrary_json_objects_raises_only_event_decode_errors(data: dict) -> None:
    try:
        raw = json.dumps(data, allow_nan=True).encode("utf-8", errors="surrogatepass")
    except (ValueError, TypeError):
        return
    try:
        event = decode_new_movie(raw)
    except EventDecodeError as exc:
        assert str(exc)
    else:
        assert isinstance(event.tmdb_id, int) and not isinstance(event.tmdb_id, bool)
        assert event.tmdb_id == data["tmdb_id"]


valid_events = st.builds(
    NewMovie,
    tmdb_id=st.integers(1, MAX_TMDB_ID),
    event_id=st.none() | st.text(min_size=1, max_size=200),
    title=st.none() | st.text(max_size=2000),
    occurred_at=st.none()
    | st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    schema_version=st.integers(1, 10),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_events)
def test_valid_events_round_trip(event: NewMovie) -> None:
    try:
        raw = event.model_dump_json().encode("utf-8")
    except (ValueError, UnicodeEncodeError):  # a lone surrogate cannot be written as UTF-8 at all
        return
    assert decode_new_movie(raw) == event


html_bits = st.sampled_from(
    [
        "<html>",
        "<head>",
        "<body>",
        "</div>",
        "<div class='image_content'>",
        "<img class='poster' ",
        "<meta property='og:image' content='",
        "src='",
        "srcset='",
        "data-src='",
        " 2x, ",
        " 1x",
        "'>",
        "/t/p/w500/a.jpg",
        "//image.tmdb.org/x.jpg",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "gopher://x/",
        "http://[::1",
        "https://",
        "/assets/logo.svg",
        "\x00",
        "&amp;",
        "<!--",
        "]]>",
        "\ufffd",
    ]
)
html_pages = st.lists(html_bits | st.text(max_size=30), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@example("<img class='poster' {<html>", PAGE)  # an attribute lxml cannot name
@given(
    html_pages, st.sampled_from([PAGE, "http://127.0.0.1:8000/movie/1-x", "https://example.org/"])
)
def test_poster_candidates_never_raise_and_return_absolute_http_urls(
    html: str, page_url: str
) -> None:
    urls = poster_candidates(html, page_url)
    assert len(urls) <= 20
    assert len(set(urls)) == len(urls)
    for url in urls:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.netloc, url
        assert "/assets/" not in parts.path
        parse_target(url)  # one that can be requested


head_bits = st.sampled_from(
    [
        "<head>",
        "<title>",
        "</title>",
        "<meta property='og:image' content='",
        '<meta name="og:image" content="',
        "<META PROPERTY=og:image CONTENT=",
        "<meta property='og:title' content='",
        "<meta content='/first.jpg' property='og:image'>",
        "<meta property='OG:IMAGE' content='/upper.jpg'>",
        "<link href='<meta property=og:image content=/in-attr.jpg>'>",
        '<meta property="og:image" content="/plain.jpg">',
        '<meta property="og:image" content=" /spaced.jpg ">',
        '<meta property="og:image" content="/a&amp;b.jpg">',
        '<meta property="og:image" content="/assets/logo.svg">',
        '<meta property="og:image" content="javascript:alert(1)">',
        '<meta property="o&#103;:image" content="/ref.jpg">',
        "<meta content='/dup1.jpg' content='/dup2.jpg' name='og:image'>",
        '<meta property="og:image">',
        "<img class='poster' src='/img.jpg'>",
        "'>",
        '">',
        ">",
        "'",
        '"',
        "/t/p/w342/a.jpg",
        "//image.tmdb.org/x.jpg",
        "&amp;",
        "<!--",
        "-->",
        "<![CDATA[",
        "]]>",
        "<script>",
        "</script>",
        "<style>",
        "</style>",
        "<noscript>",
        "</noscript>",
        "\x00",
        "\ufffd",
        "<!DOCTYPE html>",
        "<br/>",
        "<a:b>",
        "\t",
        "\n",
        " ",
        "=",
    ]
)
heads = st.lists(
    head_bits | st.text(st.characters(blacklist_categories=["Cs"]), max_size=12), max_size=30
).map("".join)


@settings(max_examples=500, deadline=None)
@given(heads)
def test_the_poster_a_head_names_is_the_one_the_whole_page_puts_first(head: str) -> None:
    if HEAD_END.search(head.encode()):
        return  # the head ends where the page says it does
    page = head + "</head><body><img class='poster' src='/body.jpg'></body>"
    watch = HeadWatch(PAGE, "utf-8", lambda url: True)
    named = watch.feed(page.encode())
    first = poster_candidates(page, PAGE)[:1]
    if named:
        assert og_image_of(head) is not None
        assert first == [watch.poster]
    else:  # the head's og:image, if any, is no URL to request: the page is read on
        assert watch.poster is None and watch.done


ALLOWED = ["www.themoviedb.org", "image.tmdb.org", "127.0.0.1:8000"]
url_origins = st.sampled_from(
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.1",
        "https://Image.TMDB.org",
        "https://image.tmdb.org.",
        "http://www.themoviedb.org:80",
        "https://www.themoviedb.org:443",
        "https://www.themoviedb.org:8443",
        "http://user@image.tmdb.org",
        "http://[::1]:8080",
        "http://[::1",
        "http://h:99999",
        "http://h:x",
        "http://999.1.1.1",
        "http://bücher.example",
        "http://xn--zz.example",
        "http://host.",
        "HTTP://host",
        "ftp://host",
        "",
    ]
)
url_bits = st.lists(
    st.sampled_from(["/", "a", "Z", "9", "-", ".", "..", "_", "~", "%", "%2F", "%zz", "?", "#"])
    | st.sampled_from(["&", "=", ";", ":", "@", "+", "'", "!", " ", '"', "<", "\\", "é", "\x7f"])
    | st.sampled_from(["[", "]", "|", "^", "`", "{", "\t", "/./", "/../", "//"])
    | st.text(max_size=3),
    max_size=12,
).map("".join)
urls = st.tuples(url_origins, url_bits).map("".join) | st.text(max_size=200)


@settings(max_examples=500, deadline=None)
@example("https://image.tmdb.org/t/p/w342/a.jpg")
@example("http://127.0.0.1:8000/movie/1")
@given(urls)
def test_the_allowlist_never_raises_and_allows_only_its_hosts(url: str) -> None:
    if Allowlist(ALLOWED).allows(url):
        parts = urlsplit(url)
        assert parts.scheme.lower() in ("http", "https")
        assert parts.username is None
        assert (parts.hostname, parts.port) in {
            ("www.themoviedb.org", None),
            ("image.tmdb.org", None),
            ("127.0.0.1", 8000),
            ("www.themoviedb.org", 443 if parts.scheme.lower() == "https" else 80),
            ("image.tmdb.org", 443 if parts.scheme.lower() == "https" else 80),
        }


@pytest.mark.parametrize(
    "url,allowed",
    [
        ("https://image.tmdb.org/t/p/w342/a.jpg", True),
        ("HTTPS://Image.TMDB.org/a.jpg", True),
        ("http://www.themoviedb.org:80/movie/603", True),
        ("http://127.0.0.1:8000/movie/1", True),
        ("http://127.0.0.1/movie/1", False),  # listed with a port: only that port
        ("https://www.themoviedb.org:8443/", False),  # listed without: the default port only
        ("http://image.tmdb.org.evil.example/", False),
        ("http://user@image.tmdb.org/", False),
        ("ftp://image.tmdb.org/", False),
        ("https://image.tmdb.org/" + "a" * MAX_URL_LENGTH, False),
    ],
)
def test_the_allowlist_allows_its_hosts_on_their_ports(url: str, allowed: bool) -> None:
    assert Allowlist(ALLOWED).allows(url) is allowed


@settings(max_examples=800, deadline=None)
@given(urls)
def test_a_target_is_sendable_as_it_is_and_reads_back_the_same(url: str) -> None:
    try:
        target = parse_target(url)
    except InvalidTarget:
        assert host_key(url) == ""
        return
    assert target.scheme in ("http", "https") and 0 < target.port < 65536
    assert target.target.startswith(b"/") and target.host_header
    for sent in (target.target, target.host_header):
        assert all(0x20 < byte < 0x7F for byte in sent), sent  # ASCII, no space or control
    assert host_key(url) == target.host_key == f"{target.host}:{target.port}"
    again = f"{target.scheme}://{target.host_header.decode()}{target.target.decode()}"
    assert parse_target(again) == target


@settings(max_examples=500, deadline=None)
@given(url_origins, url_bits, st.sampled_from(["?api_key=SECRET", "?a=1&api_key=SECRET#f", ""]))
def test_a_displayed_url_shows_no_query_nor_user_info(origin: str, rest: str, tail: str) -> None:
    url = origin.replace("://", "://me:SECRET@") + rest + tail
    shown = display_url(url)
    assert "SECRET" not in shown
    assert len(shown) <= 203


@pytest.mark.parametrize(
    "url,origin,target,host_header",
    [
        (
            "http://127.0.0.1:8000/movie/603?language=en-US",
            ("http", "127.0.0.1", 8000),
            b"/movie/603?language=en-US",
            b"127.0.0.1:8000",
        ),
        (
            "https://Image.TMDB.org/t/p/w342/abc.jpg",
            ("https", "image.tmdb.org", 443),
            b"/t/p/w342/abc.jpg",
            b"image.tmdb.org",
        ),
        (
            "http://www.themoviedb.org:80/movie/603?language=en-US#cast",
            ("http", "www.themoviedb.org", 80),
            b"/movie/603?language=en-US",
            b"www.themoviedb.org:80",
        ),
        ("http://[::1]:8080/a?q=%20x", ("http", "::1", 8080), b"/a?q=%20x", b"[::1]:8080"),
        ('http://h/é?q="x"', ("http", "h", 80), b"/%C3%A9?q=%22x%22", b"h"),
        (
            "http://bücher.example",
            ("http", "xn--bcher-kva.example", 80),
            b"/",
            b"xn--bcher-kva.example",
        ),
        ("HTTP://host?q", ("http", "host", 80), b"/?q", b"host"),
    ],
)
def test_a_target_is_the_path_query_and_host_as_sent(
    url: str, origin: tuple[str, str, int], target: bytes, host_header: bytes
) -> None:
    parsed = parse_target(url)
    assert (parsed.origin, parsed.target, parsed.host_header) == (origin, target, host_header)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/",
        "http://user:pw@host/",
        "http://host:99999/",
        "http://host:x/",
        "http://[::1/",
        "http:///path",
        "http://host/a b",
        "http://host/\x7f",
        "http://xn--zz.example/",
        "http://host/" + "a" * MAX_URL_LENGTH,
    ],
)
def test_a_url_that_cannot_be_requested_as_written_is_refused(url: str) -> None:
    with pytest.raises(InvalidTarget):
        parse_target(url)
    assert host_key(url) == ""


def test_a_reference_over_the_url_limit_is_not_joined() -> None:
    assert join_url(PAGE, "/t/p/w342/a.jpg") == "https://www.themoviedb.org/t/p/w342/a.jpg"
    with pytest.raises(InvalidTarget):
        join_url(PAGE, "/" + "a" * MAX_URL_LENGTH)
