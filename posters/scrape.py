"""Where a movie page keeps its poster: the layouts themoviedb.org has used, best first.

Kept apart from the HTTP side so that the property-based tests can throw arbitrary
markup at it: it never raises, and returns only absolute http(s) URLs. `HeadWatch`
lets the fetcher stop reading a page whose head already names the poster (og:image):
the rest of a movie page is most of its bytes and most of the parsing. With `genres`,
it reads on only as far as the genres span just after the poster (`posters.genres`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import parsel
from lxml import etree

from posters.body import decode_text
from posters.genres import HEAD_END, MAX_BYTES_PAST_HEAD, GenresScan
from posters.urls import DEFAULT_PORTS, join_url, url_problem

# Poster URLs taken from one page: a page with thousands of img tags costs no more.
MAX_CANDIDATES = 20

# C0 controls but tab, newline and carriage return; a regex, since str.translate takes a
# per-character slow path on any page with one non-ASCII character (17 ms against 2 ms
# for a 240 KB page).
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_OG_IMAGE = '//meta[@property="og:image" or @name="og:image"][1]/@content'
MAX_HEAD_BYTES = 512 * 1024  # a page whose head is longer is searched in full

# For `og_image_of`: a complete start tag as lxml tokenizes it (quoted values may hold '>'),
# and what opens markup whose inside is not tags (comments, raw text), with its end.
_META_TAG = re.compile(r"""<meta\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)
_NOT_TAG_ELEMENTS = (
    "script",
    "style",
    "textarea",
    "xmp",
    "iframe",
    "noembed",
    "noframes",
    "noscript",
    "template",
    "title",
)
_NOT_TAGS = re.compile(rf"<!--|<!\[|<({'|'.join(_NOT_TAG_ELEMENTS)})\b", re.IGNORECASE)
_CLOSERS = {name: re.compile(f"</{name}", re.IGNORECASE) for name in _NOT_TAG_ELEMENTS}
_COMMENT_END = re.compile("-->")
_NEVER = re.compile(r"(?!)")  # `<![`: not worth a cut
_OG_IMAGE_XPATH = etree.XPath(_OG_IMAGE)
# For `_plain_og_image`: an attribute value without `<`, control or line characters, and
# without `&` in the meta tag itself (lxml would decode a reference there); the tags made
# of them; what may come before the tag; a property or name with a reference in it.
_VALUE = r"""(?:"[^"<\x00-\x1f]*"|'[^'<\x00-\x1f]*'|[^\s"'<>=`\x00-\x1f]+)"""
_PLAIN_VALUE = r"""(?:"[^"<&\x00-\x1f]*"|'[^'<&\x00-\x1f]*'|[^\s"'<>=&`\x00-\x1f]+)"""
_NAME = r"[A-Za-z_:][-A-Za-z0-9_:.]*"
_NAMING = r"(?:[Pp][Rr][Oo][Pp][Ee][Rr][Tt][Yy]|[Nn][Aa][Mm][Ee])(?![-A-Za-z0-9_:.])"
_PLAIN_ATTRIBUTE = re.compile(rf"\s+({_NAME})(?:\s*=\s*({_PLAIN_VALUE}))?")
_PLAIN_META = re.compile(rf"<[Mm][Ee][Tt][Aa]((?>\s+{_NAME}(?:\s*=\s*{_PLAIN_VALUE})?)*)\s*/?>")
# before the tag: a property or a name may not hold a reference (it could spell og:image)
_PREFIX_ATTRIBUTE = (
    rf"\s+(?:{_NAMING}(?:\s*=\s*{_PLAIN_VALUE})?|(?!{_NAMING}){_NAME}(?:\s*=\s*{_VALUE})?)"
)
# an element whose inside may not be tags (`<title>`...) only in lower case, with no `<` inside
_RAW = "|".join((*_NOT_TAG_ELEMENTS, "plaintext"))
_PLAIN_PREFIX = re.compile(
    r"(?>[^<\x00-\x08\x0b\x0c\x0e-\x1f]++"
    r"|<!--(?:[^-\x00-\x08\x0b\x0c\x0e-\x1f]|-(?!->))*-->"
    r"|<![Dd][Oo][Cc][Tt][Yy][Pp][Ee][^<>\x00-\x1f]*>"
    rf"|<({_RAW})(?>{_PREFIX_ATTRIBUTE})*\s*>[^<\x00-\x08\x0b\x0c\x0e-\x1f]*</\1>"
    rf"|</?(?!(?i:{_RAW})(?![A-Za-z0-9]))[A-Za-z][A-Za-z0-9]*(?>{_PREFIX_ATTRIBUTE})*\s*/?>)*"
)


def poster_candidates(html: str, page_url: str) -> list[str]:
    """Poster URLs found on a movie page, best first.

    Order: the `og:image` meta, then `img.poster` (its `srcset` 2x entry, then `src`),
    then the older `div.image_content img/@data-src` layout. Site chrome under
    `/assets/` (the logo TMDB shares when a movie has no poster) is not a poster, and
    a URL that cannot be requested (DEL in it, say) is skipped.
    """
    sel = _selector(html)
    found: list[str] = []
    found += sel.xpath(_OG_IMAGE).getall()[:1]
    for img in sel.css("img.poster")[: MAX_CANDIDATES * 2]:
        # one attribute at a time: `attrib` reads them all, and lxml refuses to name one
        # written like `{x` (a namespace in its notation)
        found += _srcset_urls(img.root.get("srcset", ""), "2x")
        if src := img.root.get("src"):
            found.append(src)
    found += sel.css("div.image_content img::attr(data-src)").getall()[: MAX_CANDIDATES * 2]
    urls: list[str] = []
    for raw in found:
        url = _absolute(raw, page_url)
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
    ):
        self.page_url = page_url
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
        url = _absolute(og_image, self.page_url) if og_image else None
        if url is None or not self.usable(url):
            return False
        self.poster = url
        if not self.genres:
            return True
        self._scan = GenresScan()
        return self._scan.feed(rest)


def og_image_of(head: str) -> str | None:
    """The `content` of the head's first og:image meta, as `poster_candidates` reads it.

    A movie page's head is 10-20 KB, its og:image near the top: lxml parses only the
    head up to the end of the first meta tag that names og:image, when nothing before
    that tag is left open (a comment, a script, a title...) that the cut could change.
    lxml parses text in order, so that prefix yields the same first og:image as the
    whole head; where it yields none, or the cut is not clean, the whole head is parsed.
    """
    plain = _plain_og_image(head)
    if plain is not None:
        return plain
    cut = _clean_cut(head)
    if cut is not None and (found := _og_image(head[:cut])) is not None:
        return found
    return _og_image(head)


def _plain_og_image(head: str) -> str | None:
    """The og:image of a head written plainly up to it, read without lxml; None otherwise.

    Plainly: the first "og:image" of the head is in a `<meta>` tag (property or name
    og:image, a content, no character reference) before which come only text without `<`,
    complete tags whose attribute values hold no `<`, comments and a doctype, with no control
    character, and no property or name holding a character reference (which could spell
    og:image). lxml would find that tag first and give its content as written
    (`tests/test_properties.py` holds the two to the same answers); any other head is
    parsed by lxml.
    """
    mention = head.find("og:image")
    start = head.rfind("<", 0, mention)
    if mention < 0 or start < 0:
        return None
    tag = _PLAIN_META.match(head, start)
    if tag is None or tag.end() <= mention or _PLAIN_PREFIX.fullmatch(head, 0, start) is None:
        return None
    attributes: dict[str, str | None] = {}
    for name, value in _PLAIN_ATTRIBUTE.findall(tag.group(1)):
        unquoted = value[1:-1] if value[:1] in ("'", '"') else value
        attributes.setdefault(name.lower(), unquoted or None)
    named = "og:image" in (attributes.get("property"), attributes.get("name"))
    return attributes.get("content") if named else None


def _og_image(html: str) -> str | None:
    """`_OG_IMAGE` in `html` parsed as `_selector` parses it (lxml's recovering HTML parser,
    UTF-8), without parsel's wrapping: a tenth of the time on a short prefix."""
    text = _CONTROL_CHARS.sub("", html).strip()
    if not text:
        return None
    parser = etree.HTMLParser(recover=True, encoding="utf-8")  # one per call: not shareable
    root = etree.fromstring(text.encode("utf-8"), parser=parser)
    found = _OG_IMAGE_XPATH(root) if root is not None else []
    return str(found[0]) if found else None


def _clean_cut(head: str) -> int | None:
    """Where the first meta tag mentioning og:image ends, if nothing is open there."""
    pos = 0
    while True:
        meta = _META_TAG.search(head, pos)
        opener = _NOT_TAGS.search(head, pos, meta.start() if meta else len(head))
        if opener is not None:  # skip to its end; no end means the rest is inside it
            closer = _closer(opener).search(head, opener.end())
            if closer is None:
                return None
            pos = closer.end()
        elif meta is None:
            return None
        elif "og:image" in meta.group().lower():
            return meta.end()
        else:
            pos = meta.end()


def _closer(opener: re.Match[str]) -> re.Pattern[str]:
    if opener.group(1):
        return _CLOSERS[opener.group(1).lower()]
    return _COMMENT_END if opener.group() == "<!--" else _NEVER


def _srcset_urls(srcset: str, density: str) -> list[str]:
    """The URLs of the `srcset` entries written `<url> <density>`, e.g. density "2x"."""
    urls = []
    for entry in srcset.split(","):
        parts = entry.split()
        if len(parts) == 2 and parts[1] == density:
            urls.append(parts[0])
    return urls


def _absolute(raw: str, page_url: str) -> str | None:
    """`raw` made absolute against the page, if it is a valid http(s) URL outside `/assets/`."""
    if not raw.strip():
        return None
    try:
        url = join_url(page_url, raw.strip())
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc or "/assets/" in parts.path:
        return None
    return url if url_problem(url) is None else None
