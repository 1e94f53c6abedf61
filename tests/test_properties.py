"""Property-based tests: event parsing and poster extraction never fail in unplanned ways."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from posters.tmdb.scrape import _OG_IMAGE, _selector, og_image_of, poster_candidates
from posters.http.urls import (
    Allowlist,
    InvalidRequestURL,
    _host_key_of,
    _http_origin,
    _http_origin_of,
    _target_of,
    host_key,
    join_url,
    parse_url,
    request_target,
    url_problem,
)
from schemas.events import MAX_TMDB_ID, EventDecodeError, NewMovie, decode_new_movie

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


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_the_allowlist_never_raises_and_allows_only_its_hosts(url: str) -> None:
    allowlist = Allowlist(["www.themoviedb.org", "image.tmdb.org", "127.0.0.1:8000"])
    if allowlist.allows(url):
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https")
        assert (parts.hostname, parts.port) in {
            ("www.themoviedb.org", None),
            ("image.tmdb.org", None),
            ("127.0.0.1", 8000),
            ("www.themoviedb.org", 443),
            ("image.tmdb.org", 443),
            ("www.themoviedb.org", 80),
            ("image.tmdb.org", 80),
        }


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
        "'>",
        '">',
        ">",
        "'",
        '"',
        "/t/p/w342/a.jpg",
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
        "<textarea>",
        "</textarea>",
        "\x00",
        "\ufffd",
        "</head>",
        "<body>",
        # heads that `_plain_og_image` reads without lxml, and near misses
        '<meta property="og:image" content="/plain.jpg">',
        "<meta PROPERTY=og:image CONTENT=/bare.jpg/>",
        "<meta content='/dup1.jpg' content='/dup2.jpg' name='og:image'>",
        '<meta property="og:image" content=" /spaced.jpg ">',
        '<meta property="og:image" content="/a&amp;b.jpg">',
        '<meta property="og:image">',
        '<meta name="description" content="it&#39;s">',
        '<meta property="o&#103;:image" content="/ref.jpg">',
        '<meta name="og&#58;image" content="/ref2.jpg">',
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<title>A &#8212; B</title>",
        '<link rel=stylesheet href="/a.css">',
        "<br/>",
        "<a:b>",
        "<!---->",
        "\t",
        "\n",
        " ",
        "=",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(head_bits | st.text(max_size=12), max_size=30).map("".join))
def test_og_image_of_a_head_is_what_parsing_the_whole_head_finds(head: str) -> None:
    assert og_image_of(head) == _selector(head).xpath(_OG_IMAGE).get()


url_bits = st.lists(
    st.sampled_from(["/", "a", "Z", "9", "-", ".", "..", "_", "~", "%", "%2F", "%zz", "?", "#"])
    | st.sampled_from(["&", "=", ";", ":", "@", "+", "'", "!", " ", '"', "<", "\\", "é", "\x7f"])
    | st.sampled_from(["[", "]", "|", "^", "`", "{", "\t", "/./", "/../", "//"])
    | st.text(max_size=3),
    max_size=12,
).map("".join)
url_origins = st.sampled_from(
    [
        "http://127.0.0.1:8000",
        "https://Image.TMDB.org",
        "http://www.themoviedb.org:80",
        "https://www.themoviedb.org:443",
        "http://[::1]:8080",
        "http://[::1",
        "http://h:99999",
        "http://h:x",
        "http://999.1.1.1",
        "http://bücher.example",
        "http://user@host",
        "http://host.",
        "HTTP://host",
        "ftp://host",
        "",
    ]
)


@settings(max_examples=800, deadline=None)
@given(url_origins, url_bits)
def test_a_url_split_without_httpx_is_what_httpx_would_request(origin: str, rest: str) -> None:
    url = origin + rest
    try:
        expected = _target_of(parse_url(url))
    except InvalidRequestURL as exc:
        with pytest.raises(InvalidRequestURL):
            request_target(url)
        assert url_problem(url) == str(exc)
    else:
        assert request_target(url) == expected
        assert url_problem(url) is None


url_refs = st.sampled_from(
    ["", "/", "//h/x", "/a", "a", "./a", "../", "http://h", "https://h:1"]
).flatmap(lambda start: url_bits.map(lambda rest: start + rest))
# mostly plain paths and references, with the near misses that urljoin rewrites
plain_tails = st.tuples(
    st.lists(
        st.sampled_from(
            ["/a", "/b.jpg", "/%2F", "/.a", "/a:@"] * 4 + ["/..", "/.", "//", "/", ";"]
        ),
        max_size=4,
    ),
    st.sampled_from(["", "?q=1", "?a;b/?", "#f", "?q#f"] * 3 + ["?", "#", "?q#", "?#f", "?\\t"]),
).map(lambda parts: "".join(parts[0]) + parts[1])
plain_refs = st.tuples(
    st.sampled_from(
        ["", "", "http://h", "https://h:1", "http://h:80", "http://[::1]", "HTTP://h", "//h"]
    ),
    plain_tails,
).map("".join)


def outcome(f: Callable[..., object], *args: str) -> object:
    """What `f(*args)` gives, or the type of the ValueError it raises."""
    try:
        return f(*args)
    except ValueError as exc:
        return type(exc)


@settings(max_examples=800, deadline=None)
@given(
    url_origins | st.sampled_from(["https://www.themoviedb.org", "http://127.0.0.1:8000"]),
    url_bits | plain_tails,
    st.tuples(url_origins, url_refs).map("".join) | plain_refs,
)
def test_a_url_joined_or_read_without_urlsplit_is_what_urlsplit_gives(
    origin: str, rest: str, reference: str
) -> None:
    base = origin + rest
    assert outcome(join_url, base, reference) == outcome(urljoin, base, reference)
    for url in (base, reference):
        # the fast ways (a plainly written origin) against the whole URL through urlsplit
        assert outcome(host_key, url) == outcome(_host_key_of.__wrapped__, url)
        assert outcome(_http_origin, url) == outcome(_http_origin_of.__wrapped__, url)
