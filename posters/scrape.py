"""Where a movie page keeps its poster: the layouts themoviedb.org has used, best first.

Kept apart from the HTTP side so that the property-based tests can throw arbitrary
markup at it: it never raises, and returns only absolute http(s) URLs.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import parsel

from posters.urls import DEFAULT_PORTS, url_problem

# Poster URLs taken from one page: a page with thousands of img tags costs no more.
MAX_CANDIDATES = 20

_CONTROL_CHARS = {c: None for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))}


def poster_candidates(html: str, page_url: str) -> list[str]:
    """Poster URLs found on a movie page, best first.

    Order: the `og:image` meta, then `img.poster` (its `srcset` 2x entry, then `src`),
    then the older `div.image_content img/@data-src` layout. Site chrome under
    `/assets/` (the logo TMDB shares when a movie has no poster) is not a poster, and
    a URL that cannot be requested (DEL in it, say) is skipped.
    """
    sel = parsel.Selector(text=html.translate(_CONTROL_CHARS))  # lxml refuses them in attributes
    found: list[str] = []
    found += sel.xpath('//meta[@property="og:image" or @name="og:image"][1]/@content').getall()[:1]
    for img in sel.css("img.poster")[: MAX_CANDIDATES * 2]:
        found += _srcset_urls(img.attrib.get("srcset", ""), "2x")
        if src := img.attrib.get("src"):
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
        url = urljoin(page_url, raw.strip())
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc or "/assets/" in parts.path:
        return None
    return url if url_problem(url) is None else None
