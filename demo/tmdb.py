"""A loopback HTTP server shaped like themoviedb.org: slug redirects, movie pages, poster images."""

from __future__ import annotations

import functools
import html
import io
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlsplit

from PIL import Image

from demo.site_layout import PT_BR, site_page
from poster_genres.common.lifecycle import StartStop
from poster_genres.posters.tmdb.genres import TMDB_GENRES

log = logging.getLogger(__name__)

Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class StandInMovie:
    """One movie as the stand-in serves it; the failure lists let tests script bad days."""

    poster: bytes | None
    title: str = "Untitled"
    # "og" (og:image meta), "img" (img.poster srcset), "old" (div.image_content), "site" (the
    # site's own layout: relative paths, a backdrop, a lazy poster, pt-BR genres: demo.site_layout)
    layout: str = "og"
    content_type: str = "image/jpeg"
    poster_url: str | None = None  # put a different URL on the page (another host, say)
    page_failures: list[int] = field(default_factory=list)  # statuses answered before the page
    image_failures: list[int] = field(default_factory=list)  # statuses answered before the image
    retry_after: str | None = None  # Retry-After sent with each scripted failure
    genres: list[str] | None = None  # TMDB genre names the page (and the API) lists; None: none


def slugify(title: str) -> str:
    """TMDB-style slug: lower case words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "movie"


GENRE_IDS = {name: tmdb_id for tmdb_id, (name, _) in TMDB_GENRES.items()}


def tmdb_genre_names(movielens: list[str]) -> list[str]:
    """The site's names of MovieLens genres (Sci-Fi is Science Fiction, ...); others dropped."""
    names = {ml: name for name, ml in TMDB_GENRES.values() if ml is not None}
    return [names[genre] for genre in movielens if genre in names]


def genre_link(name: str) -> str:
    """A genre as the site links it: `<a href="/genre/18-drama/movie">Drama</a>`."""
    path = f"{GENRE_IDS.get(name, 99_999)}-{slugify(name)}"
    return f'<a href="/genre/{path}/movie">{html.escape(name)}</a>'


def facts_html(genres: list[str] | None) -> str:
    """The header facts after the poster: release, genres (if any) and runtime."""
    listed = ""
    if genres:
        listed = '<span class="genres">' + ",&nbsp;".join(map(genre_link, genres)) + "</span>"
    return (
        '<div class="facts"><span class="release">03/31/1999 (US)</span>'
        f'{listed}<span class="runtime">2h 16m</span></div>'
    )


def api_json(movie: StandInMovie, tmdb_id: int, poster_path: str | None) -> bytes:
    """The API's answer for a movie (`/3/movie/<id>`): title, poster_path, genres."""
    genres = [{"id": GENRE_IDS.get(name, 99_999), "name": name} for name in movie.genres or []]
    answer = {"id": tmdb_id, "title": movie.title, "poster_path": poster_path, "genres": genres}
    return json.dumps(answer).encode()


def page_html(movie: StandInMovie, image_url: str | None) -> str:
    """A movie page in one of the layouts the site has used, its facts after the poster."""
    if movie.layout == "site":
        links = [
            (GENRE_IDS.get(name, 99_999), PT_BR.get(name, name)) for name in movie.genres or []
        ]
        return site_page(movie.title, image_url, links)
    title = html.escape(movie.title)
    head = f"<title>{title} — The Movie Database (TMDB)</title>"
    body = f"<h2><a>{title}</a></h2>"
    if image_url:
        src = html.escape(image_url)
        if movie.layout == "og":
            head += f'<meta property="og:image" content="{src}">'
            body += f'<div class="poster"><img class="poster" src="{src}" alt="{title}"></div>'
        elif movie.layout == "img":
            small = html.escape(image_url.replace("/w500/", "/w300/"))
            body += (
                f'<div class="image_content"><img class="poster w-full" src="{small}" '
                f'srcset="{small} 1x, {src} 2x" alt="{title}"></div>'
            )
        elif movie.layout == "old":
            body += f'<div class="image_content"><img class="lazyload" data-src="{src}"></div>'
        else:
            raise ValueError(f"unknown layout {movie.layout!r}")
    head += '<meta property="og:title" content="' + title + '">'
    body += facts_html(movie.genres)
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


@functools.cache
def not_the_poster() -> bytes:
    """A grey JPEG: what the stand-in serves for a placeholder or a backdrop."""
    out = io.BytesIO()
    Image.new("RGB", (300, 450), (128, 128, 128)).save(out, "JPEG")
    return out.getvalue()


def respond(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str | None,
    headers: dict[str, str] | None = None,
) -> None:
    """Send a whole response; no Content-Type header at all when `content_type` is None."""
    handler.send_response(status)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-reply (timeouts, size caps) are normal here, not errors."""

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("standin: client %s went away", client_address)


class TmdbStandIn(StartStop):
    """Serve `/movie/<id>` (redirecting to `/movie/<id>-<slug>`), `/t/p/w500/<id>.jpg`,
    and the API's `/3/movie/<id>` (its `poster_path` is `/<id>.jpg`: set `TMDB_API_URL`
    to `base_url + "/3"` and `TMDB_IMAGE_BASE_URL` to `base_url + "/t/p/w500"`)."""

    def __init__(
        self,
        movies: dict[int, StandInMovie] | None = None,
        posters: dict[int, bytes] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.movies: dict[int, StandInMovie] = dict(movies or {})
        for tmdb_id, content in (posters or {}).items():
            self.movies[tmdb_id] = StandInMovie(poster=content, title=f"Movie {tmdb_id}")
        self.routes: dict[str, Route] = {}
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = _QuietServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """`host:port`, as `POSTER_HOSTS` names it."""
        address, port = self._server.server_address[:2]
        return f"{address}:{port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    def image_url(self, tmdb_id: int) -> str:
        return f"{self.base_url}/t/p/w500/{tmdb_id}.jpg"

    def image_path(self, tmdb_id: int, layout: str) -> str:
        """How a page names its poster: site-relative in the site's layout, else a URL."""
        url = self.image_url(tmdb_id)
        return url.removeprefix(self.base_url) if layout == "site" else url

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tmdb-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _scripted_failure(
        self, failures: list[int], movie: StandInMovie
    ) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            if not failures:
                return None
            status = failures.pop(0)
        headers = {"Retry-After": movie.retry_after} if movie.retry_after else {}
        return status, headers

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                log.debug("standin: " + format, *args)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with standin._lock:
                    standin.requests[path] += 1
                route = standin.routes.get(path)
                if route is not None:
                    route(self)
                    return
                if m := re.fullmatch(r"/movie/(\d+)(-[a-z0-9-]*)?", path):
                    self.movie_page(int(m.group(1)), bool(m.group(2)))
                elif m := re.fullmatch(r"/t/p/(w\d+|w\d+_and_h\d+_bestv2)/(\d+)\.\w+", path):
                    self._image(int(m.group(2)))
                elif re.fullmatch(r"/t/p/[^/]+/\d+(-backdrop)?\.jpg", path):
                    self.reply(200, not_the_poster(), "image/jpeg")  # a placeholder or a backdrop
                elif m := re.fullmatch(r"/3/movie/(\d+)", path):
                    self._api(int(m.group(1)))
                else:
                    self.reply(404, b"not found", "text/plain")

            def reply(
                self,
                status: int,
                body: bytes,
                content_type: str,
                headers: dict[str, str] | None = None,
            ) -> None:
                respond(self, status, body, content_type, headers)

            def movie_page(self, tmdb_id: int, has_slug: bool) -> None:
                movie = standin.movies.get(tmdb_id)
                if movie is None:
                    self.reply(
                        404, b"<html><body>Oops! We can't find the page</body></html>", "text/html"
                    )
                    return
                if failure := standin._scripted_failure(movie.page_failures, movie):
                    self.reply(failure[0], b"try later", "text/plain", failure[1])
                    return
                if not has_slug:
                    query = urlsplit(self.path).query
                    location = f"/movie/{tmdb_id}-{slugify(movie.title)}" + (
                        f"?{query}" if query else ""
                    )
                    self.reply(301, b"", "text/html", {"Location": location})
                    return
                url = movie.poster_url or (
                    standin.image_path(tmdb_id, movie.layout) if movie.poster is not None else None
                )
                body = page_html(movie, url).encode("utf-8")
                self.reply(200, body, "text/html; charset=utf-8")

            def _api(self, tmdb_id: int) -> None:
                movie = standin.movies.get(tmdb_id)
                if movie is None:
                    self.reply(404, b'{"success": false}', "application/json")
                    return
                if failure := standin._scripted_failure(movie.page_failures, movie):
                    self.reply(failure[0], b"try later", "text/plain", failure[1])
                    return
                poster_path = f"/{tmdb_id}.jpg" if movie.poster is not None else None
                self.reply(200, api_json(movie, tmdb_id, poster_path), "application/json")

            def _image(self, tmdb_id: int) -> None:
                movie = standin.movies.get(tmdb_id)
                if movie is None or movie.poster is None:
                    self.reply(404, b"not found", "text/plain")
                    return
                if failure := standin._scripted_failure(movie.image_failures, movie):
                    self.reply(failure[0], b"try later", "text/plain", failure[1])
                    return
                self.reply(200, movie.poster, movie.content_type)

        return Handler
