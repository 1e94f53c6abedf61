"""Find and download a movie's poster from themoviedb.org (or its API), safely.

One fetcher serves the worker and the trainer. It finds the poster's URL on the movie
page (or from the API's `poster_path`), downloads it and checks that it is an image
within the caps. Each request goes through `Retrier` (tries, backoff, the poster's time
budget, the circuit breaker, the hosts' rate limits) around `GuardedClient` (allowlist on
every redirect hop, byte caps), over connections that `CheckedBackend` makes only to
public addresses (or to a configured proxy, see `posters.proxies`).
See docs/reliability.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import httpx

from posters.body import Enough, decode_text
from posters.breaker import CircuitBreaker
from posters.errors import HostNotAllowed, PosterError, PosterNotFound, PosterUnreadable
from posters.genres import api_genres, page_genres
from posters.guarded import GuardedClient, Request, Response
from posters.images import inspect_image
from posters.net import AddressGuard, CheckedBackend, Resolver, checked_transport
from posters.pacing import HostPacer
from posters.proxies import proxy_mounts
from posters.retry import Budget, Retrier
from posters.scrape import HeadWatch, poster_candidates
from posters.settings import FetchSettings
from posters.streams import AsyncioBackend
from posters.transport import PosterTransport
from posters.urls import Allowlist, display_url, with_rendition


@dataclass(frozen=True)
class FetchStats:
    """Running totals of a fetcher, which the worker turns into metrics (posters has none)."""

    retries: int = 0  # transient failures retried
    circuits: dict[str, bool] = field(default_factory=dict)  # host -> circuit open now
    circuit_wait_s: float = 0.0  # spent waiting on open circuits
    rate_limit_wait_s: float = 0.0  # spent waiting for a host's rate limit
    rate_limit_waits: int = 0  # requests that waited for it
    connections_opened: int = 0  # TCP connections made (to hosts, or to a proxy)


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


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: posters need no session, and every response would
    otherwise go through `http.cookiejar` (and every request carry what the site set)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def _http_client(
    settings: FetchSettings,
    guard: AddressGuard,
    transport: httpx.AsyncBaseTransport | None,
    backends: list[CheckedBackend],
) -> httpx.AsyncClient:
    """The shared client: its connections (and the proxies', if any) go through the guard.

    The network backends made for it are added to `backends` (they count connections).
    """
    # As many connections may stay open as may be open: httpcore (1.0.9) closes idle
    # connections whenever the pool holds more than `max_keepalive_connections` in all.
    pool_size = settings.fetch_concurrency * 2
    limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    if transport is None:
        backends.append(CheckedBackend(guard, AsyncioBackend()))
        transport = PosterTransport(backends[-1], limits)
        proxies = proxy_mounts(settings)
        guard.trust_proxies(url for url in proxies.values() if url is not None)
        for pattern, url in proxies.items():
            proxied = None
            if url is not None:
                backends.append(CheckedBackend(guard, AsyncioBackend()))
                proxied = checked_transport(guard, backends[-1], limits=limits, proxy=url)
            mounts[pattern] = proxied
    client = httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
        limits=limits,
        headers={"User-Agent": settings.user_agent, "Accept-Language": settings.tmdb_language},
        transport=transport,
        mounts=mounts,
        trust_env=False,  # proxies only as `proxy_mounts` says; never .netrc credentials
    )
    client._cookies = _NoCookies()  # the `cookies` setter would copy it into a plain jar
    return client


class PosterFetcher:
    """Async poster fetcher with one shared HTTP client; use as `async with`.

    `transport` replaces the network (tests); `resolver` replaces DNS for the SSRF
    guard (tests), which is bypassed when a transport is given.
    """

    def __init__(
        self,
        settings: FetchSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ):
        self.settings = settings
        self.allowlist = Allowlist.from_settings(settings)
        self.guard = AddressGuard.from_urls_and_hosts(
            [settings.tmdb_base_url, settings.tmdb_api_url, settings.tmdb_image_base_url],
            settings.poster_hosts,
            resolver,
        )
        self.breaker = CircuitBreaker(
            settings.breaker_threshold, settings.breaker_cooldown_s, settings.breaker_max_cooldown_s
        )
        self._backends: list[CheckedBackend] = []
        self._client = _http_client(settings, self.guard, transport, self._backends)
        self._http = GuardedClient(
            self._client, self.allowlist, self.breaker, settings.max_redirects
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
            sum(backend.opened for backend in self._backends),
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
        await self._client.aclose()

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
        self, tmdb_id: int, image: Response, budget: Budget, genres: list[str] | None
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
            watches.append(HeadWatch(url, encoding, self.allowlist.allows, settings.page_genres))
            return watches[-1].feed

        request = Request(page_url, settings.max_page_bytes, "text/html", watch=watch)
        page = await self._get(request, budget)
        genres = page_genres(page.content, page.encoding) if settings.page_genres else None
        if watches and watches[-1].poster is not None:  # the head named it: no parse needed
            return watches[-1].poster, genres
        text = decode_text(page.content, page.encoding)
        candidates = poster_candidates(text, page.url)
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

    async def _get(self, request: Request, budget: Budget) -> Response:
        """GET with retries on transient failures, within the poster's time budget."""
        return await self._retrier.run(
            request.url, budget, lambda probe, pace: self._http.get(request, probe, pace)
        )
