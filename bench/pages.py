"""Movie pages for the poster server: TMDB-shaped (150-300 KB) or the old lean one.

A real themoviedb.org movie page carries the poster in `<meta property="og:image">` (the
w780 rendition) near the top of `<head>`, after which come some 150-300 KB of
`hreflang` links, inline scripts, navigation, the `img.poster` with its srcset, cast and
crew lists, reviews, media, recommendations, keywords and the footer. Parsing all of it
is part of what the worker pays per poster, so the stand-in page has that shape and size.
Text is made of random syllables, so it compresses about as well as a real page.
"""

from __future__ import annotations

import html
import json
import random

from demo.tmdb import genre_link, slugify

LANGUAGES = [
    "ar-AE",
    "ar-SA",
    "be-BY",
    "bg-BG",
    "bn-BD",
    "ca-ES",
    "ch-GU",
    "cs-CZ",
    "cy-GB",
    "da-DK",
    "de-AT",
    "de-CH",
    "de-DE",
    "el-GR",
    "en-AU",
    "en-CA",
    "en-GB",
    "en-IE",
    "en-NZ",
    "en-US",
    "eo-EO",
    "es-ES",
    "es-MX",
    "et-EE",
    "eu-ES",
    "fa-IR",
    "fi-FI",
    "fr-CA",
    "fr-FR",
    "ga-IE",
    "gl-ES",
    "he-IL",
    "hi-IN",
    "hr-HR",
    "hu-HU",
    "id-ID",
    "it-IT",
    "ja-JP",
    "ka-GE",
    "kk-KZ",
    "kn-IN",
    "ko-KR",
    "ky-KG",
    "lt-LT",
    "lv-LV",
    "ml-IN",
    "mr-IN",
    "ms-MY",
    "ms-SG",
    "nb-NO",
    "nl-BE",
    "nl-NL",
    "no-NO",
    "pa-IN",
    "pl-PL",
    "pt-BR",
    "pt-PT",
    "ro-RO",
    "ru-RU",
    "si-LK",
    "sk-SK",
    "sl-SI",
    "sq-AL",
    "sr-RS",
    "sv-SE",
    "ta-IN",
    "te-IN",
    "th-TH",
    "tl-PH",
    "tr-TR",
    "uk-UA",
    "vi-VN",
    "zh-CN",
    "zh-HK",
    "zh-SG",
    "zh-TW",
    "zu-ZA",
]
SYLLABLES = [
    "ka",
    "ri",
    "to",
    "an",
    "el",
    "mo",
    "su",
    "ve",
    "ra",
    "in",
    "de",
    "lo",
    "ma",
    "ne",
    "or",
    "is",
    "ta",
    "li",
    "co",
    "ur",
    "be",
    "sa",
    "mi",
    "no",
    "fa",
    "ge",
    "ho",
    "lu",
    "pe",
    "ti",
    "va",
    "ze",
    "qu",
    "ché",
    "ña",
    "ül",
    "ør",
    "ja",
    "wy",
    "xi",
]
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Family",
    "Fantasy",
    "History",
    "Horror",
    "Music",
    "Mystery",
    "Romance",
    "Science Fiction",
    "Thriller",
    "War",
    "Western",
)
MENU = {
    "Movies": ("Popular", "Now Playing", "Upcoming", "Top Rated"),
    "TV Shows": ("Popular", "Airing Today", "On TV", "Top Rated"),
    "People": ("Popular People",),
    "More": ("Discussions", "Leaderboard", "Support", "API Documentation", "API for Business"),
}
FOOTER = {
    "The Basics": (
        "About TMDB",
        "Contact Us",
        "Support Forums",
        "API Documentation",
        "System Status",
    ),
    "Get Involved": ("Contribution Bible", "Add New Movie", "Add New TV Show"),
    "Community": ("Guidelines", "Discussions", "Leaderboard"),
    "Legal": ("Terms of Use", "API Terms of Use", "Privacy Policy", "DMCA Policy"),
}


class _Words:
    """Random text from a seeded generator."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def word(self) -> str:
        return "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(1, 4)))

    def name(self) -> str:
        return f"{self.word().title()} {self.word().title()}"

    def title(self) -> str:
        return " ".join(self.word().title() for _ in range(self.rng.randint(1, 4)))

    def sentence(self, words: int = 12) -> str:
        return (
            " ".join(
                self.word() for _ in range(self.rng.randint(words // 2, words * 2))
            ).capitalize()
            + "."
        )

    def paragraph(self, sentences: int = 5) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, sentences * 2)))

    def file(self) -> str:
        chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return "".join(self.rng.choice(chars) for _ in range(27)) + ".jpg"


def movie_title(variant: int, seed: int = 42) -> str:
    """The title of page variant `variant` (its slug goes in the redirect)."""
    return _Words(random.Random(f"{seed}-{variant}-title")).title()


def tmdb_page(
    variant: int, origin: str, poster_file: str, size: int, seed: int = 42, layout: str = "tmdb"
) -> str:
    """A themoviedb.org movie page of at most `size` bytes (UTF-8, a few KB less) whose poster is `poster_file`.

    `layout="site"` writes it as the site does today: site-relative image paths, a second
    og:image naming the backdrop, and a lazy-loaded poster whose `src` is a blurred
    placeholder (the real image in `data-src` / `data-srcset`).
    """
    rng = random.Random(f"{seed}-{variant}")
    w = _Words(rng)
    title = movie_title(variant, seed)
    esc = html.escape(title)
    movie_id = 1000 + variant
    slug = f"{movie_id}-{slugify(title)}"
    year = rng.randint(1950, 2024)
    media = "/t/p" if layout == "site" else f"{origin}/t/p"
    poster_small = f"{media}/w300_and_h450_bestv2/{poster_file}"
    poster_large = f"{media}/w600_and_h900_bestv2/{poster_file}"
    if layout == "site":
        blurred = f"{media}/w300_and_h450_bestv2_filter(blur)/{poster_file}"
        poster_img = (
            f'<img class="poster lazyload" src="{blurred}" data-src="{poster_small}" '
            f'data-srcset="{poster_small} 1x, {poster_large} 2x" alt="{html.escape(movie_title(variant, seed))}">'
        )
        og_images = [f"{media}/w780/{poster_file}", f"{media}/w1280/backdrop-{poster_file}"]
    else:
        poster_img = (
            f'<img class="poster w-full" src="{poster_small}" srcset="{poster_small} 1x, {poster_large} 2x" '
            f'alt="{html.escape(movie_title(variant, seed))}" loading="lazy">'
        )
        og_images = [f"{media}/w780/{poster_file}"]
    overview = html.escape(w.paragraph(4))

    head = [
        f"<title>{esc} ({year}) &#8212; The Movie Database (TMDB)</title>",
        '<meta http-equiv="X-UA-Compatible" content="IE=edge,chrome=1">',
        '<meta http-equiv="cleartype" content="on">',
        '<meta charset="utf-8">',
        (
            '<meta name="keywords" content="Movies, TV Shows, Streaming, Reviews, API, Actors, Actresses, Photos, '
            'User Ratings, Synopsis, Trailers, Teasers, Credits, Cast">'
        ),
        '<meta name="mobile-web-app-capable" content="yes">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f'<meta name="description" content="{overview[:300]}">',
        *(f'<meta property="og:image" content="{url}">' for url in og_images),
        f'<meta property="og:title" content="{esc}">',
        '<meta property="og:type" content="video.movie">',
        f'<meta property="og:url" content="{origin}/movie/{slug}">',
        f'<meta property="og:description" content="{overview[:300]}">',
        '<meta property="og:site_name" content="The Movie Database">',
        '<meta name="twitter:card" content="summary_large_image">',
        '<meta name="twitter:site" content="@themoviedb">',
        f'<link rel="canonical" href="{origin}/movie/{slug}">',
        *(
            f'<link rel="alternate" hreflang="{lang}" href="{origin}/movie/{slug}?language={lang}">'
            for lang in LANGUAGES
        ),
        '<link rel="preconnect" href="https://media.themoviedb.org" crossorigin>',
        *(
            f'<link rel="stylesheet" href="/assets/2/v4/css/{w.word()}-{rng.getrandbits(64):016x}.min.css">'
            for _ in range(4)
        ),
        *(
            f'<script src="/assets/2/v4/js/{w.word()}-{rng.getrandbits(64):016x}.min.js"></script>'
            for _ in range(6)
        ),
        "<script>" + _config_script(w, rng, movie_id) + "</script>",
        '<script type="application/ld+json">'
        + json.dumps(_json_ld(w, rng, title, media, poster_file))
        + "</script>",
    ]
    body = [
        '<div class="page_wrap movie_wrap">',
        _header(w, rng),
        '<main id="main" class="smaller subtle show_search_false">',
        (
            '<section id="original_header" class="images inner"><div class="poster_wrapper false">'
            '<div class="poster"><div class="image_content backdrop">'
            f'{poster_img}</div><div class="zoom"><a class="no_click" href="#">'
            '<span class="glyphicons_v2 fullscreen white"></span> Expand</a></div></div></div>'
        ),
        _title_header(w, rng, title, slug, year),
        "</section>",
    ]
    tail = [_footer(w, rng), "</div>"]

    def page(cast: int, reviews: int, recommendations: int, script: str) -> str:
        sections = [
            _cast(w, random.Random(f"{seed}-{variant}-cast"), media, cast),
            _reviews(w, random.Random(f"{seed}-{variant}-reviews"), reviews),
            _media_panel(w, random.Random(f"{seed}-{variant}-media"), media),
            _recommendations(w, random.Random(f"{seed}-{variant}-rec"), media, recommendations),
            _facts(w, random.Random(f"{seed}-{variant}-facts"), title),
            "</main>",
        ]
        return (
            '<!DOCTYPE html>\n<html lang="en" class="no-js">\n<head>\n'
            + "\n".join(head)
            + "\n</head>\n"
            '<body class="v4 no_notification">\n'
            + "\n".join(body + sections + tail)
            + "\n<script>"
            + script
            + "</script>\n</body>\n</html>\n"
        )

    # grow the lists with the target size, then pad with inline script (TMDB's templates)
    scale = max(1.0, size / 150_000)
    cast = int(rng.randint(12, 24) * scale)
    reviews = int(rng.randint(2, 4) * scale)
    recommendations = min(40, int(rng.randint(10, 20) * scale))
    room = size - len(page(cast, reviews, recommendations, "").encode())
    filler: list[str] = []
    while room > 0:
        chunk = _template_script(w, rng)
        if len(chunk.encode()) + 1 > room:
            break
        filler.append(chunk)
        room -= len(chunk.encode()) + 1
    return page(cast, reviews, recommendations, "\n".join(filler))


def lean_page(tmdb_id: str, url: str) -> str:
    """The bench's old minimal page (kept for comparison)."""
    return (
        f"<!DOCTYPE html><html><head><title>Movie {tmdb_id} - The Movie Database (TMDB)</title>"
        f'<meta property="og:image" content="{url}"><meta property="og:title" content="Movie {tmdb_id}">'
        f'</head><body><h2><a>Movie {tmdb_id}</a></h2><div class="poster">'
        f'<img class="poster" src="{url}" alt="Movie {tmdb_id}"></div></body></html>'
    )


def _config_script(w: _Words, rng: random.Random, movie_id: int) -> str:
    strings = {f"{w.word()}_{w.word()}": w.sentence(5) for _ in range(40)}
    return (
        f"var tmdb = {{ session: {{ id: '{rng.getrandbits(128):032x}' }}, page: {{ media_type: 'movie', "
        f"id: {movie_id} }}, locale: 'en-US' }};\nwindow.translations = {json.dumps(strings, ensure_ascii=False)};"
    )


def _json_ld(
    w: _Words, rng: random.Random, title: str, media: str, poster_file: str
) -> dict[str, object]:
    return {
        "@context": "https://schema.org",
        "@type": "Movie",
        "name": title,
        "image": f"{media}/w500/{poster_file}",
        "description": w.paragraph(2),
        "aggregateRating": {
            "@type": "AggregateRating",
            "ratingValue": round(rng.uniform(4, 9), 1),
            "ratingCount": rng.randint(50, 30000),
        },
        "actor": [{"@type": "Person", "name": w.name()} for _ in range(10)],
    }


def _header(w: _Words, rng: random.Random) -> str:
    menus = "".join(
        f'<li class="k-item k-menu-item"><a class="no_click k-link k-menu-link" href="/{slugify(top)}">{top}</a>'
        '<ul class="k-group k-menu-group">'
        + "".join(
            f'<li class="k-item"><a class="k-link" href="/{slugify(top)}/{slugify(item)}">{item}</a></li>'
            for item in items
        )
        + "</ul></li>"
        for top, items in MENU.items()
    )
    return (
        '<header class="top-bar"><div class="content"><div class="sub_media"><div class="nav_wrapper">'
        '<a class="logo" href="/" aria-label="Home"><img src="/assets/2/v4/logos/v2/'
        f'blue_short-{rng.getrandbits(64):016x}.svg" alt="The Movie Database (TMDB)" width="154" height="20"></a>'
        f'<ul class="dropdown_menu navigation k-widget k-reset k-header k-menu">{menus}</ul></div>'
        '<div class="flex"><ul class="primary"><li class="translate"><div>en</div></li>'
        '<li><a href="/login">Login</a></li><li><a href="/signup">Join TMDB</a></li>'
        '<li class="search"><a class="search" href="/search"><span class="glyphicons_v2 search blue"></span>'
        "</a></li></ul></div></div></div></header>"
    )


def _title_header(w: _Words, rng: random.Random, title: str, slug: str, year: int) -> str:
    """Title, facts, genres, user score, tagline, overview and the crew, next to the poster."""
    esc = html.escape(title)
    listed = rng.sample(GENRES, rng.randint(1, 4))
    for _ in listed:  # the draws of the former random genre ids: the rest of the page is as it was
        rng.randint(12, 99999)
    genres = ",&nbsp;".join(map(genre_link, listed))  # TMDB's ids and separator
    crew = "".join(
        f'<li class="profile"><p><a href="/person/{rng.randint(1, 4_000_000)}-{slugify(name)}">'
        f'{html.escape(name)}</a></p><p class="character">{job}</p></li>'
        for name, job in (
            (w.name(), rng.choice(("Director", "Screenplay", "Story", "Characters")))
            for _ in range(rng.randint(2, 6))
        )
    )
    return (
        '<div class="header_poster_wrapper false"><section class="header poster">'
        f'<div class="title ott_false"><h2 class="{rng.randint(1, 9)}"><a href="/movie/{slug}">{esc}</a> '
        f'<span class="tag release_date">({year})</span></h2><div class="facts">'
        f'<span class="certification">PG-13</span><span class="release">{rng.randint(1, 28):02d}/'
        f'{rng.randint(1, 12):02d}/{year} (US)</span><span class="genres">{genres}</span>'
        f'<span class="runtime">{rng.randint(1, 3)}h {rng.randint(0, 59)}m</span></div></div>'
        '<ul class="auto actions"><li class="chart"><div class="consensus details"><div class="outer_ring">'
        f'<div class="user_score_chart" data-percent="{rng.randint(40, 95)}" data-track-color="#204529" '
        'data-bar-color="#21d07a"></div></div></div></li></ul>'
        f'<div class="header_info"><h3 class="tagline" dir="auto">{html.escape(w.sentence(6))}</h3>'
        f'<h3 dir="auto">Overview</h3><div class="overview" dir="auto"><p>{html.escape(w.paragraph(4))}</p>'
        f'</div><ol class="people no_image">{crew}</ol></div></section></div>'
    )


def _cast(w: _Words, rng: random.Random, media: str, count: int) -> str:
    cards = []
    for order in range(count):
        name, face = w.name(), w.file()
        person = f"/person/{rng.randint(1, 4_000_000)}-{slugify(name)}"
        cards.append(
            f'<li class="card" data-order="{order}"><a href="{person}"><img loading="lazy" class="profile" '
            f'src="{media}/w138_and_h175_face/{face}" srcset="{media}/w138_and_h175_face/{face} 1x, '
            f'{media}/w276_and_h350_face/{face} 2x" alt="{html.escape(name)}"></a><p><a href="{person}">'
            f'{html.escape(name)}</a></p><p class="character">{html.escape(w.name())}</p></li>'
        )
    return (
        '<section class="panel top_billed scroller"><h3 dir="auto">Top Billed Cast</h3>'
        '<div id="cast_scroller" class="scroller_wrap should_fade is_fading"><ol class="people scroller">'
        + "".join(cards)
        + '<li class="filler view_more"><p><a href="cast">View More <span class="glyphicons_v2 arrow-thin-right">'
        '</span></a></p></li></ol></div><p class="new_button"><a href="cast">Full Cast &amp; Crew</a></p></section>'
    )


def _reviews(w: _Words, rng: random.Random, count: int) -> str:
    items = "".join(
        f'<div class="review_container"><div class="avatar"><a href="/u/{w.word()}"><img loading="lazy" '
        f'class="avatar" src="/t/p/w45_and_h45_face/{w.file()}" alt="{w.word()}"></a></div><div class="info">'
        f'<div class="rating_wrapper"><div class="rating"><span class="glyphicons_v2 star white"></span>'
        f"{rng.randint(1, 10)}.0</div><h3>A review by {html.escape(w.name())}</h3></div>"
        f'<h5>Written by <a href="/u/{w.word()}">{w.word()}</a> on {rng.randint(1, 28)} March {rng.randint(2010, 2024)}'
        f'</h5></div><div class="teaser"><p>{html.escape(w.paragraph(6))}</p><p>{html.escape(w.paragraph(6))}</p>'
        "</div></div>"
        for _ in range(count)
    )
    return (
        '<section class="panel social_panel"><section class="review"><div class="menu"><h3 dir="auto">Social</h3>'
        '<ul><li class="active"><a id="reviews" class="media_panel" href="#">Reviews</a></li>'
        f'<li><a id="discussions" href="#">Discussions</a></li></ul></div><div class="content"><div class="inner_content">'
        f"{items}</div></div></section></section>"
    )


def _media_panel(w: _Words, rng: random.Random, media: str) -> str:
    videos = "".join(
        f'<div class="video card no_border"><div class="wrapper" style="background-image: url(\'https://i.ytimg.com/vi/'
        f'{rng.getrandbits(40):010x}/hqdefault.jpg\');"><a class="no_click play_trailer" href="#" '
        f'data-site="YouTube" data-id="{rng.getrandbits(40):010x}" data-title="{html.escape(w.title())}">'
        '<div class="play_background"><span class="glyphicons_v2 play invert svg"></span></div></a></div></div>'
        for _ in range(rng.randint(2, 6))
    )
    backdrops = "".join(
        f'<div class="backdrop"><img loading="lazy" src="{media}/w533_and_h300_bestv2/{f}" '
        f'srcset="{media}/w533_and_h300_bestv2/{f} 1x, {media}/w1066_and_h600_bestv2/{f} 2x" alt=""></div>'
        for f in (w.file() for _ in range(rng.randint(4, 10)))
    )
    return (
        '<section class="panel media_panel media scroller"><div class="menu"><h3 dir="auto">Media</h3><ul>'
        '<li class="active"><a class="media_panel" href="#">Most Popular</a></li><li><a href="#">Videos</a></li>'
        f'<li><a href="#">Backdrops</a></li><li><a href="#">Posters</a></li></ul></div><div class="h_scroller">'
        f"{videos}{backdrops}</div></section>"
    )


def _recommendations(w: _Words, rng: random.Random, media: str, count: int) -> str:
    cards = []
    for _ in range(count):
        title, backdrop = w.title(), w.file()
        href = f"/movie/{rng.randint(2, 1_300_000)}-{slugify(title)}"
        cards.append(
            f'<div class="item mini backdrop mini_card"><div class="image_content"><a href="{href}" title="'
            f'{html.escape(title)}"><img loading="lazy" class="backdrop w-full" src="{media}/w250_and_h141_face/'
            f'{backdrop}" srcset="{media}/w250_and_h141_face/{backdrop} 1x, {media}/w500_and_h282_face/'
            f'{backdrop} 2x" alt="{html.escape(title)}"></a><div class="meta"><span class="release_date">'
            f'<span class="glyphicons_v2 calendar"></span> {rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/'
            f'{rng.randint(1950, 2024)}</span></div></div><p class="movie flex"><a class="title" href="{href}">'
            f'<bdi>{html.escape(title)}</bdi></a><span class="vote_average">{rng.randint(30, 95)}%</span></p></div>'
        )
    return (
        '<section id="recommendation_waypoint" class="recommendations panel"><div id="recommendations">'
        '<h3 dir="auto">Recommendations</h3><div id="recommendation_scroller" class="scroller_wrap should_fade">'
        f'<div class="scroller">{"".join(cards)}</div></div></div></section>'
    )


def _facts(w: _Words, rng: random.Random, title: str) -> str:
    keywords = "".join(
        f'<li><a href="/keyword/{rng.randint(1, 300_000)}-{slugify(k)}/movie">{html.escape(k)}</a></li>'
        for k in (w.word() for _ in range(rng.randint(5, 25)))
    )
    return (
        '<div class="grey_column"><section class="split_column"><div class="column"><section class="facts left_column">'
        '<div class="social_links"><a class="social_link" title="Visit Homepage" href="#"></a></div>'
        f"<h4><bdi>Original Title</bdi></h4> {html.escape(title)}<p><strong><bdi>Status</bdi></strong> Released</p>"
        "<p><strong><bdi>Original Language</bdi></strong> English</p><p><strong><bdi>Budget</bdi></strong> "
        f"${rng.randint(1, 300) * 1_000_000:,}.00</p><p><strong><bdi>Revenue</bdi></strong> "
        f'${rng.randint(1, 2000) * 1_000_000:,}.00</p></section><section class="keywords right_column">'
        f'<h4 dir="auto">Keywords</h4><ul>{keywords}</ul></section></div></section></div>'
    )


def _footer(w: _Words, rng: random.Random) -> str:
    columns = "".join(
        f"<div><h3>{heading}</h3><ul>"
        + "".join(f'<li><a href="/{slugify(item)}">{item}</a></li>' for item in items)
        + "</ul></div>"
        for heading, items in FOOTER.items()
    )
    return (
        '<footer><nav><div class="join"><img src="/assets/2/v4/logos/v2/'
        f'blue_square_2-{rng.getrandbits(64):016x}.svg" alt="The Movie Database (TMDB)" width="130" height="94">'
        f'<a class="rounded logged_in" href="/u/{w.word()}">Hi {w.word()}!</a></div>{columns}</nav>'
        f'<section class="build">Build {rng.getrandbits(32):08x} ({rng.randint(1000, 9999)})</section></footer>'
    )


def _template_script(w: _Words, rng: random.Random) -> str:
    """One of the page's inline scripts: a kendo template and its translations."""
    rows = "".join(
        f'<div class="{w.word()}"><span class="#= {w.word()} #">#: {w.word()}.{w.word()} #</span></div>'
        for _ in range(rng.randint(5, 20))
    )
    strings = json.dumps(
        {w.word(): w.sentence(8) for _ in range(rng.randint(5, 20))}, ensure_ascii=False
    )
    return (
        f"$('#{w.word()}_{rng.getrandbits(32):08x}').kendoTooltip({{ template: kendo.template('{rows}'), "
        f"position: 'bottom', showOn: 'click' }});\nI18n.translations['{w.word()}'] = {strings};"
    )
