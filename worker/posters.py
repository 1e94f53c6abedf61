"""Find and download a movie's poster from themoviedb.org (or its API), safely.

One module serves the worker and the trainer. Every request goes through `_request`,
which checks the allowlist on each hop (redirects are followed by hand), applies
timeouts and a byte cap (after decompression, decoded in bounded steps), and turns
failures into `worker.errors` types; `_get` adds retries with exponential backoff,
jitter and `Retry-After`. Connections go through `worker.net.CheckedBackend`, which
refuses private addresses after DNS and connects to the address it checked.

A per-host circuit breaker (`worker.breaker.CircuitBreaker`) keeps an outage of the site from
burning every event's retries: once a host failed `breaker_threshold` times in a row,
requests to it wait while one probe at a time tests it, for at most
`max_outage_wait_s` per poster; then the event is dead-lettered as `fetch_failed`.
See docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import json
import logging
import random
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urljoin, urlsplit

import httpx
import parsel
from PIL import Image, UnidentifiedImageError

from worker.breaker import DEFAULT_PORTS, CircuitBreaker, host_key
from worker.errors import (
    FetchFailed,
    HostNotAllowed,
    MovieNotFound,
    PosterError,
    PosterNotFound,
    PosterTooLarge,
    PosterUnreadable,
    TransientError,
)
from worker.net import AddressGuard, Resolver, checked_transport
from worker.settings import FetchSettings

log = logging.getLogger(__name__)

IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP"})
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
HOST_DOWN_STATUSES = frozenset({500, 502, 503, 504})  # count against the host's circuit
MAX_CANDIDATES = 20  # poster URLs taken from one page; a page with thousands of img tags is not worse
CONTENT_ENCODINGS = {"gzip": 47, "x-gzip": 47, "deflate": 15}  # zlib wbits (47: gzip or zlib header)


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


class Allowlist:
    """Hosts that may be requested: `host` (default port only) or `host:port` entries."""

    def __init__(self, entries: list[str]):
        self._exact: set[tuple[str, int]] = set()
        self._default_port: set[str] = set()
        for entry in entries:
            host, port = _split_host_port(entry.strip().lower())
            if port is None:
                self._default_port.add(host)
            else:
                self._exact.add((host, port))

    @classmethod
    def from_settings(cls, settings: FetchSettings) -> Allowlist:
        """The site, the image hosts, and the API host when an API key is set."""
        entries = [_origin_entry(settings.tmdb_base_url), *settings.poster_hosts]
        if settings.tmdb_api_key is not None:
            entries += [_origin_entry(settings.tmdb_api_url), _origin_entry(settings.tmdb_image_base_url)]
        return cls(entries)

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username:
            return False
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            return False
        host = parts.hostname.lower()
        if (host, port) in self._exact:
            return True
        return host in self._default_port and port == DEFAULT_PORTS[parts.scheme]

    def check(self, url: str) -> None:
        """Raise `HostNotAllowed` unless the URL may be requested."""
        if not self.allows(url):
            raise HostNotAllowed(f"refused to request {_display(url)}: host not on the allowlist")


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None


def _origin_entry(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def _display(url: str) -> str:
    """A URL without its query string (which may hold an API key)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


_CONTROL_CHARS = {c: None for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))}


def poster_candidates(html: str, page_url: str) -> list[str]:
    """Poster URLs found on a movie page, best first.

    Order: the `og:image` meta, then `img.poster` (its `srcset` 2x entry, then `src`),
    then the older `div.image_content img/@data-src` layout. Site chrome under
    `/assets/` (the logo TMDB shares when a movie has no poster) is not a poster.
    """
    sel = parsel.Selector(text=html.translate(_CONTROL_CHARS))  # lxml refuses them in attributes
    found: list[str] = []
    found += sel.xpath('//meta[@property="og:image" or @name="og:image"][1]/@content').getall()[:1]
    for img in sel.css("img.poster")[: MAX_CANDIDATES * 2]:
        srcset = img.attrib.get("srcset", "")
        found += [url for url, _, density in (_srcset_entry(e) for e in srcset.split(",")) if density == "2x"]
        if src := img.attrib.get("src"):
            found.append(src)
    found += sel.css("div.image_content img::attr(data-src)").getall()[: MAX_CANDIDATES * 2]
    urls: list[str] = []
    for raw in found:
        try:
            url = urljoin(page_url, raw.strip())
            parts = urlsplit(url)
        except ValueError:  # e.g. an invalid IPv6 literal
            continue
        if raw.strip() and parts.scheme in DEFAULT_PORTS and parts.netloc and url not in urls:
            if "/assets/" not in parts.path:
                urls.append(url)
        if len(urls) >= MAX_CANDIDATES:
            break
    return urls


def _srcset_entry(entry: str) -> tuple[str, str, str]:
    parts = entry.split()
    return (parts[0], "", parts[1]) if len(parts) == 2 else (parts[0] if parts else "", "", "")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: float | None = None,
) -> float:
    """Delay before try `attempt + 1`: exponential with equal jitter, at least `Retry-After`."""
    exponential = min(cap, base * 2 ** (attempt - 1))
    jitter = random.random() if rand is None else rand
    delay = exponential / 2 + exponential / 2 * jitter
    return max(delay, retry_after) if retry_after is not None else delay


def inspect_image(content: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Format, width and height from the image header; refuse what will not decode or is too big."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            fmt, (width, height) = image.format, image.size
    except Image.DecompressionBombError as exc:
        raise PosterTooLarge(f"image has too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise PosterUnreadable(f"not an image in a known format ({len(content)} bytes)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise PosterUnreadable(f"not a readable image: {exc}") from None
    if fmt not in IMAGE_FORMATS:
        raise PosterUnreadable(f"image format {fmt} is not one of {', '.join(sorted(IMAGE_FORMATS))}")
    if width <= 0 or height <= 0:
        raise PosterUnreadable(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise PosterTooLarge(f"image is {width}x{height}, over the cap of {max_pixels} pixels")
    return fmt, width, height


class _CircuitOpen(Exception):
    """A redirect hop reached a host whose circuit is open; `_get` waits for it."""

    def __init__(self, host: str):
        super().__init__(host)
        self.host = host


@dataclass
class _Response:
    url: str
    content: bytes
    content_type: str
    encoding: str | None


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
            settings.breaker_threshold,
            settings.breaker_cooldown_s,
            settings.breaker_max_cooldown_s,
        )
        self.max_outage_wait_s: float = settings.max_outage_wait_s
        self._semaphore = asyncio.Semaphore(settings.fetch_concurrency)
        limits = httpx.Limits(
            max_connections=settings.fetch_concurrency * 2,
            max_keepalive_connections=settings.fetch_concurrency,
        )
        if transport is None:
            transport = checked_transport(self.guard, limits=limits)
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            limits=limits,
            headers={"User-Agent": settings.user_agent, "Accept-Language": settings.tmdb_language},
            transport=transport,
            trust_env=False,
        )
        self.retries = 0  # transient failures retried, for metrics

    async def __aenter__(self) -> PosterFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, tmdb_id: int) -> Poster:
        """Find the poster of `tmdb_id` and download it; raise a `PosterError` on failure."""
        budget = _Budget(time.monotonic() + self.settings.fetch_deadline_s)
        if self.settings.tmdb_api_key is not None:
            url = await self._poster_url_from_api(tmdb_id, budget)
        else:
            url = await self._poster_url_from_page(tmdb_id, budget)
        image = await self._get(url, budget, max_bytes=self.settings.max_image_bytes, accept="image/*", image=True)
        if not image.content_type.startswith("image/"):
            raise PosterUnreadable(
                f"{_display(image.url)} is {image.content_type or 'untyped'}, not an image",
                budget.attempts,
            )
        try:
            _, width, height = inspect_image(image.content, self.settings.max_image_pixels)
        except PosterError as exc:
            exc.attempts = budget.attempts
            raise
        return Poster(tmdb_id, image.url, image.content, image.content_type, width, height, budget.attempts)

    async def _poster_url_from_page(self, tmdb_id: int, budget: _Budget) -> str:
        page_url = f"{self.settings.tmdb_base_url}/movie/{tmdb_id}?language={self.settings.tmdb_language}"
        page = await self._get(page_url, budget, max_bytes=self.settings.max_page_bytes, accept="text/html")
        try:
            text = page.content.decode(page.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            text = page.content.decode("utf-8", errors="replace")
        candidates = poster_candidates(text, page.url)
        allowed = [url for url in candidates if self.allowlist.allows(url)]
        if allowed:
            return allowed[0]
        if candidates:
            raise HostNotAllowed(
                f"the poster of movie {tmdb_id} is at {_display(candidates[0])}, off the allowlist",
                budget.attempts,
            )
        raise PosterNotFound(f"no poster on {_display(page.url)}", budget.attempts)

    async def _poster_url_from_api(self, tmdb_id: int, budget: _Budget) -> str:
        assert self.settings.tmdb_api_key is not None
        key = self.settings.tmdb_api_key.get_secret_value()
        url = f"{self.settings.tmdb_api_url}/movie/{tmdb_id}"
        if key.startswith("eyJ"):  # a v4 read access token
            params, headers = {"language": self.settings.tmdb_language}, {"Authorization": f"Bearer {key}"}
        else:
            params, headers = {"language": self.settings.tmdb_language, "api_key": key}, {}
        url = str(httpx.URL(url, params=params))
        response = await self._get(
            url, budget, max_bytes=self.settings.max_page_bytes, accept="application/json", headers=headers
        )
        try:
            poster_path = json.loads(response.content).get("poster_path")
        except (ValueError, AttributeError, RecursionError):
            raise PosterError(f"the API answered for movie {tmdb_id} with something not a JSON object", budget.attempts)
        if not poster_path or not isinstance(poster_path, str):
            raise PosterNotFound(f"the API has no poster for movie {tmdb_id}", budget.attempts)
        return f"{self.settings.tmdb_image_base_url}/{poster_path.lstrip('/')}"

    async def _get(
        self,
        url: str,
        budget: _Budget,
        *,
        max_bytes: int,
        accept: str,
        image: bool = False,
        headers: dict[str, str] | None = None,
    ) -> _Response:
        """GET with retries on transient failures, within the poster's time budget.

        Time spent waiting for an open circuit extends the budget (up to
        `max_outage_wait_s` per poster), and failures while the host is down do not use
        up the event's tries: an outage of the site is not the event's fault.
        """
        tries = 0
        wait_for = host_key(url)
        while True:
            waited, probe = await self.breaker.admit(wait_for, self.max_outage_wait_s - budget.waited)
            budget.waited += waited
            budget.deadline += waited
            tries += 1
            budget.attempts += 1
            try:
                async with self._semaphore:
                    limit = min(self.settings.request_timeout_s, max(0.0, budget.deadline - time.monotonic()))
                    try:
                        async with asyncio.timeout(limit):
                            return await self._request(
                                url, probe=probe, max_bytes=max_bytes, accept=accept, image=image, headers=headers
                            )
                    except TimeoutError:
                        raise TransientError(f"{_display(url)} took over {limit:.1f} s") from None
            except _CircuitOpen as exc:  # a redirect led to a host that is down
                tries -= 1
                budget.attempts -= 1
                wait_for = exc.host
                continue
            except TransientError as exc:
                wait_for = exc.host or wait_for
                if self.breaker.is_open(wait_for):
                    tries -= 1  # the host is down: wait for it in `admit` rather than burn a try
                    self.retries += 1
                    continue
                remaining = budget.deadline - time.monotonic()
                delay = backoff_delay(
                    tries, self.settings.backoff_base_s, self.settings.backoff_max_s, exc.retry_after
                )
                if tries >= self.settings.fetch_attempts or delay >= remaining:
                    raise FetchFailed(
                        f"gave up on {_display(url)} after {tries} tries: {exc.detail}", budget.attempts
                    ) from None
                self.retries += 1
                log.debug("retrying %s in %.2f s: %s", _display(url), delay, exc.detail)
                await asyncio.sleep(delay)
            except PosterError as exc:
                exc.attempts = budget.attempts
                raise
            finally:
                probe = False

    async def _request(
        self,
        url: str,
        *,
        probe: bool,
        max_bytes: int,
        accept: str,
        image: bool,
        headers: dict[str, str] | None,
    ) -> _Response:
        """One GET, following redirects by hand so that every hop is checked."""
        request_headers = {"Accept": accept, **(headers or {})}
        request_headers["Accept-Encoding"] = "identity" if image else "gzip, deflate"
        first = True
        for _ in range(self.settings.max_redirects + 1):
            self.allowlist.check(url)
            host = host_key(url)
            hop_probe = probe and first
            first = False
            if not hop_probe and self.breaker.is_open(host):
                raise _CircuitOpen(host)
            outcome = "unknown"  # "ok" or "failed" once the host's health is known
            try:
                try:
                    request = self._client.build_request("GET", url, headers=request_headers)
                    response = await self._client.send(request, stream=True)
                except httpx.TimeoutException:
                    outcome = "failed"
                    detail = f"timed out requesting {_display(url)}"
                    self.breaker.failure(host, detail, hop_probe)
                    raise TransientError(detail, host=host) from None
                except httpx.TransportError as exc:
                    outcome = "failed"
                    detail = f"could not reach {_display(url)}: {type(exc).__name__}"
                    self.breaker.failure(host, detail, hop_probe)
                    raise TransientError(detail, host=host) from None
                try:
                    if response.status_code in HOST_DOWN_STATUSES:
                        outcome = "failed"
                        self.breaker.failure(host, f"answered {response.status_code}", hop_probe)
                    else:  # any other answer shows the host is up, even a 404 or a 429
                        outcome = "ok"
                        self.breaker.success(host, hop_probe)
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    self._raise_for_status(response, url, image, host)
                    content = await self._read_capped(response, url, max_bytes, image)
                    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                    return _Response(url, content, content_type, response.charset_encoding)
                finally:
                    await response.aclose()
            except asyncio.CancelledError:  # the request timeout (a slow host) or shutdown
                if outcome == "unknown":
                    outcome = "failed"
                    self.breaker.failure(host, f"no complete answer from {_display(url)} in time", hop_probe)
                raise
            finally:
                if hop_probe and outcome == "unknown":
                    self.breaker.release(host)
        raise PosterError(f"more than {self.settings.max_redirects} redirects from {_display(url)}")

    @staticmethod
    def _raise_for_status(response: httpx.Response, url: str, image: bool, host: str = "") -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        what = f"GET {_display(url)} answered {status}"
        if status in RETRY_STATUSES:
            raise TransientError(what, parse_retry_after(response.headers.get("retry-after")), host=host)
        if status in (404, 410):
            raise PosterNotFound(what) if image else MovieNotFound(what)
        raise PosterError(what)

    async def _read_capped(self, response: httpx.Response, url: str, max_bytes: int, image: bool) -> bytes:
        """The body, decompressed in bounded steps, refused as soon as it passes `max_bytes`."""
        too_big = PosterTooLarge if image else PosterError
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > max_bytes:
            raise too_big(f"{_display(url)} is {int(declared)} bytes, over the cap of {max_bytes}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower() or "identity"
        decoder = None
        if encoding in CONTENT_ENCODINGS:
            decoder = zlib.decompressobj(CONTENT_ENCODINGS[encoding])
        elif encoding != "identity":
            raise PosterError(f"{_display(url)} is sent with content-encoding {encoding[:40]!r}, which is not accepted")
        if response.is_stream_consumed:  # a body already in memory (an in-process transport)
            decoder, source = None, _in_memory(response.content)
        else:
            source = response.aiter_raw()
        chunks: list[bytes] = []
        size = 0
        try:
            async for raw in source:
                data = raw
                while decoder is not None and data:
                    out = decoder.decompress(data, max_bytes - size + 1)
                    data = decoder.unconsumed_tail
                    size += len(out)
                    if size > max_bytes:
                        break
                    chunks.append(out)
                    if decoder.eof:
                        break
                if decoder is None:
                    size += len(raw)
                    chunks.append(raw)
                if size > max_bytes:
                    what = "decompresses to more than" if decoder is not None else "is over"
                    raise too_big(f"{_display(url)} {what} the cap of {max_bytes} bytes")
        except httpx.TimeoutException:
            raise TransientError(f"timed out reading {_display(url)}") from None
        except zlib.error as exc:
            raise PosterError(f"{_display(url)} sent a body that does not decode: {exc}") from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection lost reading {_display(url)}: {type(exc).__name__}") from None
        return b"".join(chunks)


async def _in_memory(content: bytes) -> AsyncIterator[bytes]:
    yield content


@dataclass
class _Budget:
    """Time and tries spent on one poster."""

    deadline: float
    attempts: int = 0
    waited: float = 0.0  # seconds spent waiting for open circuits
