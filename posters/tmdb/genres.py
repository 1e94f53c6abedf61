"""The genres a movie page (or the API) lists, as MovieLens genre names.

A themoviedb.org movie page lists its genres in the header facts, just after the poster:
`<span class="genres"><a href="/genre/18-drama/movie">Drama</a>,&nbsp;<a ...>Crime</a></span>`.
`GenresScan` watches the body arrive after the head and says when reading can stop: the
span is closed, the facts ended without one, or `MAX_BYTES_PAST_HEAD` went by.
`page_genres` then finds the span with a byte search and parses that fragment alone,
never the page. TMDB's genres map onto MovieLens's by their id (the same in every
language), else by their English name; History, TV Movie and unknown ones have no
MovieLens name and are dropped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from poster_genres.posters.http.bodies import decode_text

# TMDB's movie genres: id -> (English name, MovieLens name or None)
TMDB_GENRES: dict[int, tuple[str, str | None]] = {
    28: ("Action", "Action"),
    12: ("Adventure", "Adventure"),
    16: ("Animation", "Animation"),
    35: ("Comedy", "Comedy"),
    80: ("Crime", "Crime"),
    99: ("Documentary", "Documentary"),
    18: ("Drama", "Drama"),
    10751: ("Family", "Children"),
    14: ("Fantasy", "Fantasy"),
    36: ("History", None),
    27: ("Horror", "Horror"),
    10402: ("Music", "Musical"),
    9648: ("Mystery", "Mystery"),
    10749: ("Romance", "Romance"),
    878: ("Science Fiction", "Sci-Fi"),
    10770: ("TV Movie", None),
    53: ("Thriller", "Thriller"),
    10752: ("War", "War"),
    37: ("Western", "Western"),
}
BY_NAME: dict[str, str | None] = {name.lower(): ml for name, ml in TMDB_GENRES.values()}

# Bytes after the head within which the genres span must close (TMDB's is a few KB in).
MAX_BYTES_PAST_HEAD = 64 * 1024
MAX_FRAGMENT_BYTES = 8 * 1024  # a longer "span" is not the genres list
MAX_GENRES = 32
MAX_TAG_BYTES = 512  # how far before `class="genres"` its tag may open

SPAN_MARK = b'class="genres"'
SPAN_END = b"</span>"
FACTS_MARK = b'class="facts"'
FACTS_END = b"</div>"
_LINK_START = re.compile(r"<a\b([^<>]*)>", re.IGNORECASE)
_LINK_END = re.compile(r"</a\s*>", re.IGNORECASE)
_GENRE_ID = re.compile(r"/genre/(\d{1,9})")
_TAG = re.compile(r"<[^<>]*>")  # `[^<>]`: each try stops at the next `<`, so a pass is linear
_SPACE = re.compile(r"\s+")
HEAD_END = re.compile(rb"</head|<body", re.IGNORECASE)  # a head may end without its tag


def movielens_genre(name: str, tmdb_id: int | None = None) -> str | None:
    """The MovieLens name of a TMDB genre (by id if known, else by English name), or None."""
    if tmdb_id is not None and tmdb_id in TMDB_GENRES:
        return TMDB_GENRES[tmdb_id][1]
    return BY_NAME.get(_SPACE.sub(" ", name).strip().lower())


def _mapped(genres: Iterable[tuple[str, int | None]]) -> list[str] | None:
    """MovieLens names of (name, id) pairs, in order, once each; None when none maps."""
    found: list[str] = []
    for name, tmdb_id in genres:
        label = movielens_genre(name, tmdb_id)
        if label is not None and label not in found:
            found.append(label)
    return found or None


def page_genres(page: bytes, encoding: str | None = None) -> list[str] | None:
    """The MovieLens genres of the page's genres span; None if it has none (or none maps)."""
    fragment = _span(page)
    if fragment is None:
        return None
    pairs: list[tuple[str, int | None]] = []
    for attributes, inner in _links(decode_text(fragment, encoding))[:MAX_GENRES]:
        name = html.unescape(_TAG.sub("", inner))
        number = _GENRE_ID.search(attributes)
        pairs.append((name, int(number.group(1)) if number else None))
    return _mapped(pairs)


def _links(text: str) -> list[tuple[str, str]]:
    """(attributes, inner text) of each `<a ...>...</a>`, in one pass over `text`.

    Each link is the last `<a ...>` before a `</a>`; every search starts where the last one
    ended, so the work is linear in the text whatever it holds.
    """
    links = []
    at = 0
    while (end := _LINK_END.search(text, at)) is not None:
        start = None
        for start in _LINK_START.finditer(text, at, end.start()):
            pass
        if start is not None:
            links.append((start.group(1), text[start.end() : end.start()]))
        at = end.end()
    return links


def api_genres(answer: object) -> list[str] | None:
    """The MovieLens genres of an API movie answer's `genres: [{id, name}]`; None if none."""
    genres = answer.get("genres") if isinstance(answer, dict) else None
    if not isinstance(genres, list):
        return None
    pairs: list[tuple[str, int | None]] = []
    for genre in genres[:MAX_GENRES]:
        if isinstance(genre, dict):
            name, number = genre.get("name"), genre.get("id")
            pairs.append(
                (
                    name if isinstance(name, str) else "",
                    number if isinstance(number, int) and not isinstance(number, bool) else None,
                )
            )
    return _mapped(pairs)


def _body_start(page: bytes) -> int:
    """Where the page's body begins (0 if its head does not end): the head is not searched."""
    end = page.find(b"</head>")
    if end < 0:
        match = HEAD_END.search(page)
        end = 0 if match is None else match.start()
    return end


def _span(page: bytes) -> bytes | None:
    """What is inside the body's first `<span class="genres">`, if it closes in reach.

    Searched for only as far as `GenresScan` reads: a page without one costs that much.
    """
    start = _body_start(page)
    stop = start + MAX_BYTES_PAST_HEAD
    at = page.find(SPAN_MARK, start, stop)
    while at >= 0:
        tag = page.rfind(b"<", max(0, at - MAX_TAG_BYTES), at)
        start = page.find(b">", at, at + MAX_TAG_BYTES)
        if tag >= 0 and page[tag + 1 : tag + 5].lower() == b"span" and start >= 0:
            end = page.find(SPAN_END, start, start + MAX_FRAGMENT_BYTES)
            return None if end < 0 else page[start + 1 : end]
        at = page.find(SPAN_MARK, at + len(SPAN_MARK), stop)
    return None


class GenresScan:
    """Fed the body after the head, in order: says when the genres span is in hand.

    True once the span has closed, once the header facts (where TMDB lists genres) closed
    without one, or once `max_bytes` came past the head: a page without the span costs
    that bound, not its whole body.
    """

    def __init__(self, max_bytes: int = MAX_BYTES_PAST_HEAD):
        self.max_bytes = max_bytes
        self._body = bytearray()
        self._span = -1  # where the span's mark is, once seen
        self._facts = -1  # where the facts' mark is, once seen

    def feed(self, data: bytes) -> bool:
        """Whether the body so far (ending with `data`) is enough."""
        body = self._body
        start = max(0, len(body) - len(SPAN_MARK))  # a mark may straddle two pieces
        body += data[: self.max_bytes - len(body)]  # what lies past the bound is not searched
        if self._span < 0:
            self._span = body.find(SPAN_MARK, start)
        if self._span >= 0:
            closed = body.find(SPAN_END, max(self._span, start)) >= 0
        else:
            if self._facts < 0:
                self._facts = body.find(FACTS_MARK, start)
            closed = self._facts >= 0 and body.find(FACTS_END, max(self._facts, start)) >= 0
        return closed or len(body) >= self.max_bytes
