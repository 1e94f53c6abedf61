"""The genres a movie page lists: finding them cheaply, publishing them, and counting how
far the model's genres agree with them."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from demo.broker import free_port
from demo.tmdb import StandInMovie, TmdbStandIn, facts_html, genre_link, page_html
from poster_genres.posters import FetchSettings, Poster, PosterFetcher
from poster_genres.posters.http.bodies import DISCARD_MAX_BYTES
from poster_genres.posters.tmdb.genres import (
    MAX_BYTES_PAST_HEAD,
    GenresScan,
    api_genres,
    movielens_genre,
    page_genres,
)
from poster_genres.posters.tmdb.scrape import HeadWatch
from poster_genres.worker.jobs import decode_batch
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.publisher import Publisher
from poster_genres.worker.results import ResultBuilder
from tests.fakes import FakeClassifier, FakeProducer, event_record, poster
from tests.fixtures import (
    COLOURS,
    build_tiny_model,
    consume_all,
    event,
    poster_bytes,
    produce,
    start_worker,
    worker_env,
)

URL = "https://www.themoviedb.org/movie/603-the-matrix"
OG = '<meta property="og:image" content="https://image.tmdb.org/t/p/w780/matrix.jpg">'
HEAD = f"<!DOCTYPE html><html><head><title>The Matrix</title>{OG}</head>"
SPAN = (
    '<span class="genres"><a href="/genre/28-action/movie">Action</a>,&nbsp;'
    '<a href="/genre/878-science-fiction/movie">Science Fiction</a></span>'
)
NAV = "<header>" + "<li><a href='/x'>menu</a></li>" * 200 + "</header>"  # ~7 KB before the facts


def body(facts: str, rest: int = 200_000) -> str:
    """A body as TMDB's: navigation, the poster, the facts, then a long rest."""
    return (
        f"<body>{NAV}<img class='poster' src='/p.jpg'><div class='title'><h2>The Matrix</h2>"
        f"{facts}</div>" + "<p>cast and crew</p>" * (rest // 18) + "</body></html>"
    )


WITH_SPAN = HEAD + body(f'<div class="facts"><span class="release">1999</span>{SPAN}</div>')
WITHOUT_SPAN = HEAD + body('<div class="facts"><span class="release">1999</span></div>')
WITHOUT_FACTS = HEAD + body("")


def allow(url: str) -> bool:
    return url.startswith("https://image.tmdb.org/")


# -- the mapping ---------------------------------------------------------------------------


def test_tmdb_genres_map_onto_movielens_names_and_some_onto_none():
    by_name = {
        name: movielens_genre(name)
        for name in ("Science Fiction", "Family", "Music", "Drama", "Western", " war ")
    }
    assert by_name == {
        "Science Fiction": "Sci-Fi",
        "Family": "Children",
        "Music": "Musical",
        "Drama": "Drama",
        "Western": "Western",
        " war ": "War",
    }
    assert [movielens_genre(n) for n in ("History", "TV Movie", "Anime", "")] == [None] * 4
    # the id decides, whatever the page's language calls the genre
    assert movielens_genre("Science-Fiction", 878) == "Sci-Fi"
    assert movielens_genre("Familie", 10751) == "Children"
    assert movielens_genre("Action", 36) is None  # 36 is History
    assert movielens_genre("Comedy", 424242) == "Comedy"  # an unknown id: the name


def test_the_api_genres_are_mapped_and_nothing_mapped_is_none():
    answer = {
        "genres": [
            {"id": 18, "name": "Drama"},
            {"id": 36, "name": "History"},
            {"id": 10402, "name": "Musik"},
            {"id": 18, "name": "Drama"},
            {"name": "Family"},
            "junk",
        ]
    }
    assert api_genres(answer) == ["Drama", "Musical", "Children"]
    assert api_genres({"genres": [{"id": 10770, "name": "TV Movie"}]}) is None
    assert api_genres({"genres": []}) is None
    assert api_genres({"poster_path": "/x.jpg"}) is None
    assert api_genres({"genres": "Drama"}) is None
    assert api_genres(["not", "an", "object"]) is None


# -- the page ------------------------------------------------------------------------------


def test_the_genres_span_is_found_and_parsed():
    assert page_genres(WITH_SPAN.encode()) == ["Action", "Sci-Fi"]
    assert page_genres(WITHOUT_SPAN.encode()) is None
    assert page_genres(WITHOUT_FACTS.encode()) is None
    spaced = (
        '<span class="genres">\n  <a href="/genre/35-comedy/movie">Comedy</a>,&nbsp;\n'
        '  <a href="/genre/10749-romance/movie"><bdi>Romance</bdi></a>\n</span>'
    )
    assert page_genres((HEAD + body(spaced)).encode()) == ["Comedy", "Romance"]
    only_history = '<span class="genres"><a href="/genre/36-history/movie">History</a></span>'
    assert page_genres((HEAD + body(only_history)).encode()) is None
    unclosed = '<span class="genres"><a href="/genre/18-drama/movie">Drama</a>' + "x" * 20_000
    assert page_genres((HEAD + "<body>" + unclosed).encode()) is None
    # a span in the head (a script's template) is not the page's list
    template = "<script>var t = '" + SPAN + "';</script>"
    assert page_genres(HEAD.replace("</head>", template + "</head>").encode()) is None
    french = SPAN.replace(">Science Fiction<", ">Science-Fiction<").replace(">Action<", ">Acción<")
    latin1 = (HEAD + body(french)).encode("latin-1", errors="replace")
    assert page_genres(latin1, "latin-1") == ["Action", "Sci-Fi"]


def feed_in_pieces(watch: HeadWatch, page: bytes, cuts: list[int]) -> int | None:
    """Feed `page` cut at `cuts`; the end of the piece after which the watch said enough."""
    for start, end in zip([0, *cuts], [*cuts, len(page)], strict=True):
        if watch.feed(page[start:end]):
            return end
    return None


def test_reading_stops_once_the_genres_span_closes_wherever_the_pieces_are_cut():
    page = WITH_SPAN.encode()
    mark, close = page.index(b'class="genres"'), page.index(b"</span></div>")
    for cut in [*range(mark - 3, mark + 16), *range(close - 2, close + 9)]:
        watch = HeadWatch(URL, "utf-8", allow, genres=True)
        stopped = feed_in_pieces(watch, page, [100, cut, cut + 5, len(page) - 10])
        assert stopped is not None and close + len(b"</span>") <= stopped <= len(page) - 10, cut
        assert watch.poster == "https://image.tmdb.org/t/p/w780/matrix.jpg"
        assert page_genres(page[:stopped]) == ["Action", "Sci-Fi"]
    without = HeadWatch(URL, "utf-8", allow)  # PAGE_GENRES=false: the head is enough
    head_end = page.index(b"</head>") + len(b"</head>")
    assert feed_in_pieces(without, page, [head_end, head_end + 1000]) == head_end


def test_a_page_without_the_span_stops_at_the_end_of_the_facts_or_at_the_byte_bound():
    page = WITHOUT_SPAN.encode()
    facts_end = page.index(b"</div>", page.index(b'class="facts"')) + len(b"</div>")
    watch = HeadWatch(URL, "utf-8", allow, genres=True)
    stopped = feed_in_pieces(watch, page, list(range(512, len(page), 512)))
    assert stopped is not None and facts_end <= stopped < facts_end + 512
    page = WITHOUT_FACTS.encode()
    body_start = page.index(b"</head>")
    watch = HeadWatch(URL, "utf-8", allow, genres=True)
    stopped = feed_in_pieces(watch, page, list(range(512, len(page), 512)))
    assert stopped is not None
    assert body_start + MAX_BYTES_PAST_HEAD <= stopped < body_start + MAX_BYTES_PAST_HEAD + 512
    scan = GenresScan(max_bytes=100)
    assert [scan.feed(b"x" * 60), scan.feed(b"x" * 60)] == [False, True]


def test_a_head_without_a_usable_poster_still_means_reading_everything():
    page = WITH_SPAN.replace("image.tmdb.org", "cdn.example.com").encode()
    watch = HeadWatch(URL, "utf-8", allow, genres=True)
    assert feed_in_pieces(watch, page, list(range(512, len(page), 512))) is None
    assert watch.poster is None


# -- fetching over HTTP ----------------------------------------------------------------------


class Trickle:
    """A page sent in 4 KB pieces, slowly; counts what was sent before the client hung up."""

    def __init__(self, page: str):
        self.page = page.encode()
        self.sent = 0

    def __call__(self, h: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html; charset=utf-8")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        try:
            for start in range(0, len(self.page), 4096):
                h.wfile.write(self.page[start : start + 4096])
                h.wfile.flush()
                self.sent = start + 4096
                time.sleep(0.01)
        except OSError:  # the client hung up
            pass


def fetch_all(settings: FetchSettings, ids: list[int]) -> list[Poster]:
    async def run() -> list[Poster]:
        async with PosterFetcher(settings) as fetcher:
            return [await fetcher.fetch(i) for i in ids]

    return asyncio.run(run())


def test_fetched_posters_carry_the_genres_their_page_lists(tmdb: TmdbStandIn):
    image = poster_bytes(COLOURS["Red"])
    tmdb.movies[1] = StandInMovie(image, genres=["Science Fiction", "Family", "History"])
    tmdb.movies[2] = StandInMovie(image)  # facts without genres
    tmdb.movies[3] = StandInMovie(image, layout="img", genres=["Music"])  # the page read in full
    tmdb.movies[4] = StandInMovie(image, genres=["TV Movie"])
    settings = FetchSettings(tmdb_base_url=tmdb.base_url, poster_hosts=[tmdb.host])
    posters = fetch_all(settings, [1, 2, 3, 4])
    assert [p.page_genres for p in posters] == [("Sci-Fi", "Children"), None, ("Musical",), None]
    off = fetch_all(settings.model_copy(update={"page_genres": False}), [1, 3])
    assert [p.page_genres for p in off] == [None, None]


def test_the_api_answer_gives_the_genres_too(tmdb: TmdbStandIn):
    image = poster_bytes(COLOURS["Red"])
    tmdb.movies[5] = StandInMovie(image, genres=["Drama", "Crime"])
    tmdb.movies[6] = StandInMovie(image)
    settings = FetchSettings(
        tmdb_base_url=tmdb.base_url,
        poster_hosts=[tmdb.host],
        tmdb_api_key="k3y",
        tmdb_api_url=f"{tmdb.base_url}/3",
        tmdb_image_base_url=f"{tmdb.base_url}/t/p/w500",
    )
    posters = fetch_all(settings, [5, 6])
    assert [p.page_genres for p in posters] == [("Drama", "Crime"), None]
    assert tmdb.requests["/3/movie/5"] == 1 and tmdb.requests["/movie/5"] == 0


def test_a_page_is_read_up_to_its_genres_or_the_bound_not_in_full(tmdb: TmdbStandIn):
    image = poster_bytes(COLOURS["Red"])
    head = HEAD.replace("https://image.tmdb.org/t/p/w780/matrix.jpg", tmdb.image_url(7))
    pages = {7: head + WITH_SPAN[len(HEAD) :], 8: head + WITHOUT_FACTS[len(HEAD) :]}
    trickles = {}
    for tmdb_id, page in pages.items():
        tmdb.movies[tmdb_id] = StandInMovie(image)
        tmdb.routes[f"/movie/{tmdb_id}"] = trickles[tmdb_id] = Trickle(page)
    settings = FetchSettings(tmdb_base_url=tmdb.base_url, poster_hosts=[tmdb.host])
    posters = fetch_all(settings, [7, 8])
    assert [p.page_genres for p in posters] == [("Action", "Sci-Fi"), None]
    # what was sent: up to where reading stopped, the little more read and dropped to keep
    # the connection (DISCARD_MAX_BYTES), and what the socket buffers held
    span_end = pages[7].encode().index(b"</span></div>")
    assert trickles[7].sent < span_end + DISCARD_MAX_BYTES + 4 * 4096, trickles[7].sent
    bound = len(head) + MAX_BYTES_PAST_HEAD
    assert bound <= trickles[8].sent < bound + DISCARD_MAX_BYTES + 4 * 4096 < len(pages[8])


def test_stand_in_pages_list_genres_as_the_site_does():
    movie = StandInMovie(b"x", genres=["Science Fiction", "Drama"])
    page = page_html(movie, "http://h/t/p/w500/1.jpg")
    assert '<a href="/genre/878-science-fiction/movie">Science Fiction</a>,&nbsp;' in page
    assert facts_html(None) in page_html(StandInMovie(b"x"), "http://h/t/p/w500/1.jpg")
    assert 'class="genres"' not in facts_html(None)
    assert genre_link("Drama") == '<a href="/genre/18-drama/movie">Drama</a>'


# -- outputs and the agreement counters ------------------------------------------------------

LABELS = ["Drama", "Comedy", "Horror"]  # FakeClassifier: b"R..." -> Drama, b"G..." -> Comedy


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "page_genre" in s.name and s.name.endswith("_total")
    }


def counts(metrics: WorkerMetrics, kind: str, version: str = "4") -> dict[str, float]:
    name = f"genre_worker_page_genre_{kind}_total"
    return {
        dict(labels)["genre"]: value
        for (sample, labels), value in samples(metrics).items()
        if sample == name and dict(labels)["model_version"] == version
    }


def test_outputs_carry_page_genres_and_the_counters_compare_them():
    pages = {
        1: (b"R", ("Drama", "Crime")),  # Drama right; Crime no label of the model
        2: (b"G", ("Drama", "Horror")),  # Comedy wrong; Drama, Horror missed
        3: (b"R", None),  # the page lists none: not compared
        4: (b"G", ("Western",)),  # none the model has: published, not compared
    }
    batch = decode_batch([event_record(i, i) for i in pages], 65536)
    classifier = FakeClassifier(version=4)
    classifier.labels = LABELS
    for job, (content, listed) in zip(batch.jobs, pages.values(), strict=True):
        job.poster = poster(job.event.tmdb_id, content, page_genres=listed)
        job.scores = classifier.scores([content])[0]
    builder = ResultBuilder("movies.genres", "movies.new.dlq")
    results = [builder.build(job, classifier) for job in batch.jobs]
    outputs = [json.loads(r.value) for r in results]
    assert [o["genres"] for o in outputs] == [["Drama"], ["Comedy"], ["Drama"], ["Comedy"]]
    assert [o.get("page_genres") for o in outputs] == [
        ["Drama", "Crime"],
        ["Drama", "Horror"],
        None,
        ["Western"],
    ]
    assert "page_genres" not in outputs[2]  # absent, not null

    metrics = WorkerMetrics()
    Publisher(FakeProducer(), metrics, threading.Event(), lambda: None).publish(results)
    assert counts(metrics, "true_positives") == {"Drama": 1, "Comedy": 0, "Horror": 0}
    assert counts(metrics, "false_positives") == {"Drama": 0, "Comedy": 1, "Horror": 0}
    assert counts(metrics, "false_negatives") == {"Drama": 1, "Comedy": 0, "Horror": 1}
    compared = samples(metrics)[
        ("genre_worker_page_genres_compared_total", (("model_version", "4"),))
    ]
    assert compared == 2


def test_a_dead_letter_is_not_compared():
    job = decode_batch([event_record(0, 1)], 65536).jobs[0]
    job.poster = poster(1, b"R", page_genres=("Drama",))
    from poster_genres.posters import PosterUnreadable

    job.error = PosterUnreadable("no")
    result = ResultBuilder("movies.genres", "movies.new.dlq").build(job, FakeClassifier())
    metrics = WorkerMetrics()
    Publisher(FakeProducer(), metrics, threading.Event(), lambda: None).publish([result])
    assert result.agreement is None and samples(metrics) == {}


# -- end to end ----------------------------------------------------------------------------


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


@pytest.mark.slow
def test_the_worker_publishes_page_genres_and_counts_agreement(broker, topics, tmdb, tmp_path):
    build_tiny_model(tmp_path, labels=["Drama", "Comedy", "Horror"])  # red, green, blue
    red, green, blue = (poster_bytes(COLOURS[c]) for c in ("Red", "Green", "Blue"))
    tmdb.movies[1] = StandInMovie(red, genres=["Drama", "Crime"])  # tp Drama
    tmdb.movies[2] = StandInMovie(green, genres=["Drama"])  # fp Comedy, fn Drama
    tmdb.movies[3] = StandInMovie(blue)  # no genres on the page: not compared
    tmdb.movies[4] = StandInMovie(blue, layout="img", genres=["Horror", "History"])  # tp Horror
    tmdb.movies[5] = StandInMovie(red, genres=["History"])  # nothing mapped
    produce(broker.bootstrap_servers, topics.input, [event(i) for i in range(1, 6)])
    port = free_port()
    env = worker_env(broker, topics, tmp_path, tmdb, HTTP_PORT=str(port))
    process = start_worker(env)
    try:
        outputs = consume_all(broker.bootstrap_servers, topics.output, 5, timeout_s=120)
        time.sleep(0.5)  # the counters follow the acknowledgements
        text = scrape(port)
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    by_id = {o["tmdb_id"]: o for o in outputs}
    assert sorted(by_id) == [1, 2, 3, 4, 5], out[-3000:]
    assert {i: by_id[i].get("page_genres") for i in by_id} == {
        1: ["Drama", "Crime"],
        2: ["Drama"],
        3: None,
        4: ["Horror"],
        5: None,
    }
    assert {i: by_id[i]["genres"] for i in by_id} == {
        1: ["Drama"],
        2: ["Comedy"],
        3: ["Horror"],
        4: ["Horror"],
        5: ["Drama"],
    }
    found = {
        (s.name, s.labels.get("genre")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("model_version") == "1"
    }
    assert found[("genre_worker_page_genres_compared_total", None)] == 3
    tp, fp, fn = (
        f"genre_worker_page_genre_{k}_total"
        for k in ("true_positives", "false_positives", "false_negatives")
    )
    assert {g: found[(tp, g)] for g in ("Drama", "Comedy", "Horror")} == {
        "Drama": 1,
        "Comedy": 0,
        "Horror": 1,
    }
    assert {g: found[(fp, g)] for g in ("Drama", "Comedy", "Horror")} == {
        "Drama": 0,
        "Comedy": 1,
        "Horror": 0,
    }
    assert {g: found[(fn, g)] for g in ("Drama", "Comedy", "Horror")} == {
        "Drama": 1,
        "Comedy": 0,
        "Horror": 0,
    }
