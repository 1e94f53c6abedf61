"""Where a movie page keeps its poster: the layouts themoviedb.org has used, best first.

Kept apart from the HTTP side so that the property-based tests can throw arbitrary
markup at it: it never raises, and returns only absolute http(s) URLs. `HeadWatch`
lets the fetcher stop reading a page whose head already names the poster (og:image):
the rest of a movie page is most of its bytes and most of the parsing. With `genres`,
it reads on only as far as the genres span just after the poster (`posters.tmdb.genres`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import parsel
from lxml import etree

from poster_genres.posters.http.bodies import decode_text
from poster_genres.posters.http.urls import join_url, parse_target
from poster_genres.posters.tmdb.genres import HEAD_END, MAX_BYTES_PAST_HEAD, GenresScan

# Poster URLs taken from one page: a page with thousands of img tags costs no more.
MAX_CANDIDATES = 20

# C0 controls but tab, newline and carriage return, which lxml refuses in attributes
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
MAX_HEAD_BYTES = 512 * 1024  # a page whose head is longer is searched in full

# a start tag to its `>`, quoted values whole: each step's first character decides it, so a
# match never goes back (a tag that does not end is read once, to the end of the head)
_TAG = re.compile(r"""<[^"'>]*(?:(?:"[^"]*"|'[^']*')[^"'>]*)*>""")
_TMDB_IMAGE_PATH = re.compile(r"/t/p/[^/?#]+/[^/?#]+(?:\?|$)")
# bounded in lxml itself, so that a page of many images costs no more than a few
_POSTER_IMGS = (
    "(//img[contains(concat(' ', normalize-space(@class), ' '), ' poster ')])"
    f"[position() <= {MAX_CANDIDATES}]"
)
_OLD_LAYOUT = (
    "(//div[contains(concat(' ', normalize-space(@class), ' '), ' image_content ')]"
    f"//img/@data-src)[position() <= {MAX_CANDIDATES}]"
)


def poster_candidates(html: str, page_url: str, images: str | None = None) -> list[str]:
    """Poster URLs found on a movie page, best first.

    Order: the first `og:image` meta (a second one names the backdrop), then `img.poster`
    (lazy-loaded `data-srcset` 2x and `data-src`, then `srcset` 2x and `src`), then the
    older `div.image_content img/@data-src` layout. A filtered rendition (`_filter(blur)`:
    a lazy image's placeholder) is never a candidate, nor is site chrome under `/assets/`
    (the logo TMDB shares when a movie has no poster), nor a URL that cannot be requested.
    With `images` (the image host's origin), a site-relative TMDB image (`/t/p/<size>/<file>`)
    is named on that host: the same file, without spending the site's rate limit.
    """
    sel = _selector(html)
    og_image = _first_og_image(sel.root)
    found: list[str] = [] if og_image is None else [og_image]
    for img in sel.xpath(_POSTER_IMGS):
        # one attribute at a time: `attrib` reads them all, and lxml refuses to name one
        # written like `{x` (a namespace in its notation)
        for name in ("data-srcset", "data-src", "srcset", "src"):
            value = img.root.get(name, "")
            found += _srcset_urls(value, "2x") if name.endswith("srcset") else [value]
    found += sel.xpath(_OLD_LAYOUT).getall()
    urls: list[str] = []
    for raw in found:
        url = _absolute(raw, page_url, images)
        if url is not None and url not in urls:
            urls.append(url)
        if len(urls) >= MAX_CANDIDATES:
            break
    return urls


def _selector(html: str) -> parsel.Selector:
    return parsel.Selector(text=_CONTROL_CHARS.sub("", html))  # lxml refuses them in attributes


class HeadWatch:
    """Watches a movie page arrive: `feed` says when its head names a usable og:image.

    Fed the page's bytes in order; returns True once, when the head is complete and its
    og:image is a valid URL that `usable` accepts (the allowlist). Then the rest of the
    page need not be read, and `poster` is that URL (what `poster_candidates` of the
    page would put first), so what was read need not be parsed again.
    A page whose head has no usable og:image is read in full, every layout searched.
    With `genres`, True comes later: once the genres span after the head is in too (or
    `GenresScan` says it is not coming).
    """

    def __init__(
        self,
        page_url: str,
        encoding: str | None,
        usable: Callable[[str], bool],
        genres: bool = False,
        images: str | None = None,
    ):
        self.page_url = page_url
        self.images = images  # see `poster_candidates`
        self.encoding = encoding or "utf-8"
        self.usable = usable
        self.genres = genres
        self._head = bytearray()
        self._scan: GenresScan | None = None  # the body after a head that named the poster
        self.done = False  # the head was seen (or is too long to wait for)
        self.poster: str | None = None  # the head's og:image, once found usable

    def feed(self, data: bytes) -> bool:
        """Whether the page read so far (ending with `data`) is enough."""
        if self._scan is not None:
            return self._scan.feed(data)
        if self.done:
            return False
        start = max(0, len(self._head) - len("</head"))
        self._head += data
        end = HEAD_END.search(self._head, start)
        if end is None:
            if len(self._head) > MAX_HEAD_BYTES:
                self.done = True
                self._head.clear()
            return False
        self.done = True
        head = decode_text(bytes(self._head[: end.start()]), self.encoding)
        rest = bytes(self._head[end.start() : end.start() + MAX_BYTES_PAST_HEAD])
        self._head.clear()
        og_image = og_image_of(head)
        url = _absolute(og_image, self.page_url, self.images) if og_image else None
        if url is None or not self.usable(url):
            return False
        self.poster = url
        if not self.genres:
            return True
        self._scan = GenresScan()
        return self._scan.feed(rest)


def og_image_of(head: str) -> str | None:
    """The `content` of the head's first og:image meta, as `poster_candidates` reads it.

    The head is parsed only up to the end of the tag in which "og:image" is first written,
    when that tag ends (`_TAG` from its `<`: one forward match, linear): lxml reads text in
    order, so that prefix yields the same first og:image as the whole head. Where it yields
    none (the first mention is in a comment or a script, say), the whole head is parsed.
    """
    mention = head.find("og:image")
    start = head.rfind("<", 0, mention) if mention >= 0 else -1
    tag = _TAG.match(head, start) if start >= 0 else None
    if tag is not None and tag.end() > mention:
        found = _og_image(head[: tag.end()])
        if found is not None:
            return found
    return _og_image(head)


def _og_image(html: str) -> str | None:
    """The first og:image of `html` parsed as `_selector` parses it (lxml's recovering HTML
    parser, UTF-8), without parsel's wrapping, which costs more than a short prefix's parse."""
    text = _CONTROL_CHARS.sub("", html).strip()
    if not text:
        return None
    parser = etree.HTMLParser(recover=True, encoding="utf-8")  # one per call: not shareable
    root = etree.fromstring(text.encode("utf-8"), parser=parser)
    return None if root is None else _first_og_image(root)


def _first_og_image(root: Any) -> str | None:
    """The `content` of the first `<meta>` whose property or name is og:image."""
    for meta in root.iter("meta"):
        if "og:image" in (meta.get("property"), meta.get("name")):
            return meta.get("content")
    return None


def _srcset_urls(srcset: str, density: str) -> list[str]:
    """The URLs of the `srcset` entries written `<url> <density>`, e.g. density "2x"."""
    urls = []
    for entry in srcset.split(","):
        parts = entry.split()
        if len(parts) == 2 and parts[1] == density:
            urls.append(parts[0])
    return urls


def _absolute(raw: str, page_url: str, images: str | None) -> str | None:
    """`raw` made absolute against the page (a TMDB image path against `images`), if it is a
    valid http(s) URL outside `/assets/` and not a filtered rendition."""
    raw = raw.strip()
    if not raw or "_filter(" in raw:
        return None
    base = images if images is not None and _TMDB_IMAGE_PATH.match(raw) else page_url
    try:
        url = join_url(base, raw)
        target = parse_target(url)
    except ValueError:  # InvalidTarget (not http(s), say), or a link urljoin cannot read
        return None
    return None if b"/assets/" in target.target.partition(b"?")[0] else url
