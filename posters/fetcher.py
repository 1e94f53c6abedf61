"""Find and download a movie's poster from themoviedb.org (or its API), safely.

One fetcher serves the worker and the trainer. It finds the poster's URL on the movie
page (or from the API's `poster_path`), downloads it and checks that it is an image
within the caps. Each request goes through `Retrier` (tries, backoff, the poster's time
budget, the circuit breaker, the hosts' rate limits) around `GuardedClient` (allowlist on
every redirect hop, byte caps), over one `posters.http` transport: connections that
`Connector` makes only to public addresses, or a configured proxy (`posters.http.proxies`).
See docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import httpx

from poster_genres.posters.errors import (
    HostNotAllowed,
    PosterError,
    PosterNotFound,
    PosterUnreadable,
)
from poster_genres.posters.guarded import Body, GuardedClient, Request
from poster_genres.posters.http.bodies import Enough, decode_text
from poster_genres.posters.http.connections import AddressGuard, Connector, Resolver
from poster_genres.posters.http.proxies import ProxiedTransport, ProxyRoutes
from poster_genres.posters.http.transport import (
    DirectTransport,
    HttpxTransport,
    Timeouts,
    Transport,
)
from poster_genres.posters.http.urls import Allowlist, display_url, origin_entry, origin_of
from poster_genres.posters.policy.breaker import CircuitBreaker
from poster_genres.posters.policy.pacing import HostPacer
from poster_genres.posters.policy.retry import Budget, Retrier
from poster_genres.posters.settings import FetchSettings
from poster_genres.posters.tmdb.genres import api_genres, page_genres
from poster_genres.posters.tmdb.images import inspect_image, with_rendition
from poster_genres.posters.tmdb.scrape import HeadWatch, poster_candidates


@dataclass(frozen=True)
class FetchStats:
    """Running totals of a fetcher, which the worker turns into metrics (posters has none)."""

    retries: int = 0  # transient failures retried
    circuits: dict[str, bool] = field(default_factory=dict)  # host -> circuit open now
    circuit_wait_s: float = 0.0  # spent waiting on open circuits
    rate_limit_wait_s: float = 0.0  # spent waiting for a host's rate limit
    rate_limit_waits: int = 0  # requests that waited for it
    connections_opened: int = 0  # connections made directly (a proxy transport keeps its own)


@dataclass(frozen=True)
class Poster:
    """A downloaded poster, checked to be an image within the caps."""

    tmdb_id: int
    url: str
    content: bytes
    content_type: str
    width: int
    height: int
    attempts: int
    page_genres: tuple[str, ...] | None = None  # MovieLens names of the genres the page lists


def allowlist_of(settings: FetchSettings) -> Allowlist:
    """The site, the image hosts, and the API host when an API key is set."""
    entries = [origin_entry(settings.tmdb_base_url), origin_entry(settings.tmdb_image_base_url)]
    entries += settings.poster_hosts
    if settings.tmdb_api_key is not None:
        entries.append(origin_entry(settings.tmdb_api_url))
    return Allowlist(entries)


def proxy_routes(settings: FetchSettings) -> ProxyRoutes | None:
    """The proxies FETCH_USE_ENV_PROXY lets the fetcher use; None: every request is direct."""
    if not settings.fetch_use_env_proxy:
        return None
    http, https, every = (
        None if secret is None else secret.get_secret_value()
        for secret in (settings.http_proxy, settings.https_proxy, settings.all_proxy)
    )
    return ProxyRoutes.from_env(http, https, every, settings.no_proxy)


def _transport(
    settings: FetchSettings, connector: Connector, mounted: httpx.AsyncBaseTransport | None
) -> Transport:
    """The fetcher's transport: a test's, else direct, through the proxies if any are set."""
    timeouts = Timeouts(
        settings.connect_timeout_s,
        settings.read_timeout_s,
        settings.read_timeout_s,
        settings.read_timeout_s,
    )
    if mounted is not None:
        return HttpxTransport(mounted, timeouts)
    pool_size = settings.fetch_concurrency * 2
    direct = DirectTransport(connector, timeouts, pool_size)
    routes = proxy_routes(settings)
    if routes is None:
        return direct
    return ProxiedTransport(direct, routes, connector.ssl_context, timeouts, pool_size)


class PosterFetcher:
    """Async poster fetcher with one shared HTTP client; use as `async with`.

    `transport` (an httpx transport) replaces the network (tests); `resolver` replaces DNS
    for the SSRF guard (tests), which is bypassed when a transport is given. TLS trusts the
    system's certificates, or those SSL_CERT_FILE / SSL_CERT_DIR name, direct or proxied.
    """

    def __init__(
        self,
        settings: FetchSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ):
        self.settings = settings
        self.allowlist = allowlist_of(settings)
        self.images = origin_of(settings.tmdb_image_base_url)  # where `/t/p/` paths are fetched
        self.guard = AddressGuard.from_urls_and_hosts(
            [settings.tmdb_base_url, settings.tmdb_api_url, settings.tmdb_image_base_url],
            settings.poster_hosts,
            resolver,
        )
        self.breaker = CircuitBreaker(
            settings.breaker_threshold, settings.breaker_cooldown_s, settings.breaker_max_cooldown_s
        )
        self.connector = Connector(self.guard, httpx.create_ssl_context())
        headers = {"User-Agent": settings.user_agent, "Accept-Language": settings.tmdb_language}
        self._http = GuardedClient(
            _transport(settings, self.connector, transport),
            headers,
            self.allowlist,
            self.breaker,
            settings.max_redirects,
        )
        self.pacer = HostPacer(settings)
        self._retrier = Retrier(settings, self.breaker, self.pacer)

    @property
    def retries(self) -> int:
        """Transient failures retried so far, for metrics."""
        return self._retrier.retries

    def stats(self) -> FetchStats:
        """Totals so far: retries, circuit states, waits, connections (safe from any thread)."""
        return FetchStats(
            self._retrier.retries,
            self.breaker.states(),
            self.breaker.waited_s,
            self.pacer.waited_s,
            self.pacer.waits,
            self.connector.opened,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.transport.aclose()

    async def fetch(self, tmdb_id: int) -> Poster:
        """Find the poster of `tmdb_id` and download it; raise a `PosterError` on failure."""
        budget = Budget(time.monotonic() + self.settings.fetch_deadline_s)
        if self.settings.tmdb_api_key is not None:
            url, genres = await self._poster_url_from_api(tmdb_id, budget)
        else:
            url, genres = await self._poster_url_from_page(tmdb_id, budget)
        url = with_rendition(url, self.settings.poster_rendition)
        request = Request(url, self.settings.max_image_bytes, "image/*", image=True)
        image = await self._get(request, budget)
        try:
            return self._poster(tmdb_id, image, budget, genres)
        except PosterError as exc:
            exc.attempts = budget.attempts
            raise

    def _poster(
        self, tmdb_id: int, image: Body, budget: Budget, genres: list[str] | None
    ) -> Poster:
        """The downloaded image as a `Poster`, if it is one."""
        if not image.content_type.startswith("image/"):
            what = image.content_type or "untyped"
            raise PosterUnreadable(f"{display_url(image.url)} is {what}, not an image")
        _, width, height = inspect_image(image.content, self.settings.max_image_pixels)
        return Poster(
            tmdb_id,
            image.url,
            image.content,
            image.content_type,
            width,
            height,
            budget.attempts,
            None if genres is None else tuple(genres),
        )

    async def _poster_url_from_page(
        self, tmdb_id: int, budget: Budget
    ) -> tuple[str, list[str] | None]:
        """The first allowed poster URL on the movie's page, and the genres it lists."""
        settings = self.settings
        page_url = f"{settings.tmdb_base_url}/movie/{tmdb_id}?language={settings.tmdb_language}"
        watches: list[HeadWatch] = []  # one per response read (a retry reads another)

        def watch(url: str, encoding: str | None) -> Enough:
            watch = HeadWatch(
                url, encoding, self.allowlist.allows, settings.page_genres, self.images
            )
            watches.append(watch)
            return watches[-1].feed

        request = Request(page_url, settings.max_page_bytes, "text/html", watch=watch)
        page = await self._get(request, budget)
        genres = page_genres(page.content, page.encoding) if settings.page_genres else None
        if watches and watches[-1].poster is not None:  # the head named it: no parse needed
            return watches[-1].poster, genres
        # the whole page is parsed on a thread (lxml lets go of the GIL while it parses): a
        # page built to be slow to parse does not hold the fetch loop
        text = decode_text(page.content, page.encoding)
        candidates = await asyncio.to_thread(poster_candidates, text, page.url, self.images)
        allowed = [url for url in candidates if self.allowlist.allows(url)]
        if allowed:
            return allowed[0], genres
        if candidates:
            where = display_url(candidates[0])
            raise HostNotAllowed(
                f"the poster of movie {tmdb_id} is at {where}, off the allowlist", budget.attempts
            )
        raise PosterNotFound(f"no poster on {display_url(page.url)}", budget.attempts)

    async def _poster_url_from_api(
        self, tmdb_id: int, budget: Budget
    ) -> tuple[str, list[str] | None]:
        """The image URL of the API's `poster_path` for the movie, and its genres."""
        settings = self.settings
        assert settings.tmdb_api_key is not None
        key = settings.tmdb_api_key.get_secret_value()
        params, headers = {"language": settings.tmdb_language}, {}
        if key.startswith("eyJ"):  # a v4 read access token
            headers["Authorization"] = f"Bearer {key}"
        else:
            params["api_key"] = key
        url = str(httpx.URL(f"{settings.tmdb_api_url}/movie/{tmdb_id}", params=params))
        request = Request(url, settings.max_page_bytes, "application/json", headers=headers)
        response = await self._get(request, budget)
        try:
            answer = json.loads(response.content)
            poster_path = answer.get("poster_path")
        except (ValueError, AttributeError, RecursionError) as exc:
            raise PosterError(
                f"the API answered for movie {tmdb_id} with something not a JSON object",
                budget.attempts,
            ) from exc
        if not poster_path or not isinstance(poster_path, str):
            raise PosterNotFound(f"the API has no poster for movie {tmdb_id}", budget.attempts)
        genres = api_genres(answer) if settings.page_genres else None
        return f"{settings.tmdb_image_base_url}/{poster_path.lstrip('/')}", genres

    async def _get(self, request: Request, budget: Budget) -> Body:
        """GET with retries on transient failures, within the poster's time budget."""
        return await self._retrier.run(
            request.url, budget, lambda probe, pace: self._http.get(request, probe, pace)
        )
