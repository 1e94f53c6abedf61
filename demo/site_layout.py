"""A movie page in themoviedb.org's own layout, as the site serves it today.

What sets it apart from the stand-in's short pages, and what the scraper must handle:
site-relative image paths; a second og:image that names the backdrop; a lazy-loaded
poster whose `src` is a blurred placeholder (`_filter(blur)`) and whose real image is
only in `data-src` / `data-srcset`; genre names in the page's language (pt-BR here),
mapped by the ids in their links; and the sizes of real pages (a head of about 10 KB, the
genres some 15 KB after it, about 100 KB in all).
"""

from __future__ import annotations

import html

# TMDB's pt-BR names of its genres, by English name
PT_BR = {
    "Action": "Ação",
    "Adventure": "Aventura",
    "Animation": "Animação",
    "Comedy": "Comédia",
    "Crime": "Crime",
    "Documentary": "Documentário",
    "Drama": "Drama",
    "Family": "Família",
    "Fantasy": "Fantasia",
    "History": "História",
    "Horror": "Terror",
    "Music": "Música",
    "Mystery": "Mistério",
    "Romance": "Romance",
    "Science Fiction": "Ficção científica",
    "TV Movie": "Cinema TV",
    "Thriller": "Thriller",
    "War": "Guerra",
    "Western": "Faroeste",
}
PLACEHOLDER = "w300_and_h450_bestv2_filter(blur)"


def _filler(kind: str, count: int) -> str:
    """Markup that pads a page the way the site's navigation, scripts and cast lists do."""
    if kind == "head":
        return "".join(
            f'<link rel="preload" href="/assets/2/v4/fonts/font-{i}.woff2" as="font" '
            f'type="font/woff2" crossorigin="anonymous">\n'
            for i in range(count)
        )
    return "".join(
        f'<li class="card"><a href="/person/{i}-someone"><img class="profile lazyload" '
        f'src="/t/p/w138_and_h175_face_filter(blur)/p{i}.jpg" '
        f'data-src="/t/p/w138_and_h175_face/p{i}.jpg" alt="Someone {i}"></a>'
        f'<p><a href="/person/{i}-someone">Someone {i}</a></p><p class="character">Role</p></li>\n'
        for i in range(count)
    )


def site_page(title: str, poster: str | None, genre_links: list[tuple[int, str]]) -> str:
    """A page of the site's layout; `poster` is the image's site-relative path (or a URL)."""
    name = html.escape(title)
    head = f'<meta charset="utf-8"><title>{name} — The Movie Database (TMDB)</title>\n'
    head += _filler("head", 80)
    head += f'<meta property="og:title" content="{name}">\n'
    picture = ""
    if poster is not None:
        src = html.escape(poster)
        backdrop = src.replace("/w500/", "/w780/").replace(".jpg", "-backdrop.jpg")
        head += f'<meta property="og:image" content="{src}">\n'
        head += f'<meta property="og:image" content="{backdrop}">\n'
        small = src.replace("/w500/", "/w300_and_h450_bestv2/")
        large = src.replace("/w500/", "/w600_and_h900_bestv2/")
        blurred = src.replace("/w500/", f"/{PLACEHOLDER}/")
        picture = (
            f'<div class="poster"><div class="image_content backdrop">'
            f'<img class="poster lazyload" src="{blurred}" data-src="{small}" '
            f'data-srcset="{small} 1x, {large} 2x" alt="{name}"></div></div>\n'
        )
    links = ",&nbsp;".join(
        f'<a href="/genre/{tmdb_id}-{html.escape(label.lower())}/movie">{html.escape(label)}</a>'
        for tmdb_id, label in genre_links
    )
    genres = f'<span class="genres">{links}</span>' if genre_links else ""
    body = '<header class="nav">' + _filler("body", 50) + "</header>\n"
    body += f'<section class="header poster">{picture}<div class="title"><h2>{name}</h2>'
    body += '<div class="facts"><span class="certification">14</span>'
    body += f'<span class="release">31/03/1999 (BR)</span>{genres}'
    body += '<span class="runtime">2h 16m</span></div></div></section>\n'
    body += '<ol class="people scroller">' + _filler("body", 250) + "</ol>\n"
    return f'<!DOCTYPE html>\n<html lang="pt-BR"><head>{head}</head><body>{body}</body></html>'
