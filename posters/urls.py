"""Which URLs poster fetching may request, and how a URL is named in errors and logs.

Every `host:port` entry is read here, once, so that the allowlist and the SSRF guard
cannot disagree about what an entry means. URLs are shown without their query string
wherever they end up in an error or a log line: in API mode it carries the key.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from posters.errors import HostNotAllowed
from posters.settings import FetchSettings

DEFAULT_PORTS = {"http": 80, "https": 443}
# `/t/p/<size>/<file>`: w500, h632, original, w600_and_h900_bestv2, w220_and_h330_face, ...
_TMDB_IMAGE_SIZE = re.compile(r"^/t/p/(?:original|[wh]\d+|w\d+_and_h\d+(?:_[a-z0-9]+)*)/(?=[^/]+$)")


def split_host_port(entry: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` as (host, port); a bare IPv6 has no port."""
    entry = entry.strip()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None


def origin_entry(url: str) -> str:
    """The `host[:port]` entry that names the origin of `url`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


@functools.lru_cache(maxsize=1024)
def host_key(url: str) -> str:
    """`host:port` of a URL, the unit the circuit breaker tracks.

    Asked of each hop's URL by the retries, the rate limit and the breaker: recent answers
    are kept (~0.1 µs a repeat), and a new URL written plainly is answered from its
    origin's, read once (~1 µs, not urlsplit's ~2-3), as for `_http_origin`.
    """
    plain = _PLAIN_ORIGIN.match(url)
    if plain is not None:
        return _host_key_of(f"{plain.group(1)}://{plain.group(2)}")
    return _host_key_of(url)


@functools.lru_cache(maxsize=256)
def _host_key_of(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        port = 0
    return f"{(parts.hostname or '').lower()}:{port}"


def display_url(url: str) -> str:
    """A URL without its query string (which may hold an API key)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL (see `url_problem`), but it may still carry a key
        return url.partition("?")[0]
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def with_rendition(url: str, size: str) -> str:
    """`url` asking for TMDB image size `size` if it has TMDB's shape; other URLs as they are."""
    if not size:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    path = _TMDB_IMAGE_SIZE.sub(f"/t/p/{size}/", parts.path, count=1)
    return url if path == parts.path else urlunsplit(parts._replace(path=path))


def url_problem(url: str) -> str | None:
    """Why `url` cannot be requested as it is written, or None if it can.

    What httpx refuses: control characters such as DEL, a port that is not a number
    below 65536, a broken IPv6 literal, a malformed international host name.
    """
    try:
        if _PLAIN_REFERENCE.fullmatch(url) is None:  # a plain path needs no more
            request_target(url)
    except InvalidRequestURL as exc:
        return str(exc)
    return None


def join_url(base: str, ref: str) -> str:
    """`urljoin(base, ref)`; the plain cases (see `_PLAIN_JOIN`) without its two parses."""
    plain = _PLAIN_JOIN.fullmatch(ref)
    origin = _PLAIN_ORIGIN.match(base) if plain is not None else None
    if origin is None:
        return urljoin(base, ref)
    return ref if plain.group(1) is not None else origin.group(0) + ref


class InvalidRequestURL(ValueError):
    """A URL httpx would refuse to request (see `url_problem`)."""


@functools.lru_cache(maxsize=1024)
def parse_url(url: str) -> httpx.URL:
    """`url` parsed as httpx will request it; `InvalidRequestURL` says why it cannot be.

    Handing httpx the parsed URL spares it parsing the string again for the request. The
    same URL is asked about more than once on its way (a redirect's `Location` is checked
    when it arrives and when it is followed; a poster's URL when it is found on the page and
    when it is requested), and httpx's parse is ~60 µs of pure Python: recent answers are
    kept (`httpx.URL` is immutable).
    """
    try:
        urlsplit(url).port  # noqa: B018 - parsing the port is the check
        parsed = httpx.URL(url)
        parsed.host  # noqa: B018 - so is decoding the host name
    except (ValueError, httpx.InvalidURL) as exc:  # idna's errors are ValueErrors
        raise InvalidRequestURL(str(exc) or type(exc).__name__) from None
    return parsed


# A URL whose request target httpx sends exactly as it is written: http(s), no user info,
# a path and query that need no percent-encoding. Anything else is parsed by httpx.
_SAFE = r"A-Za-z0-9\-._~!$&'()*+,;=:@"
# runs of characters, matched possessively: no character can start what follows them
_PCHARS = rf"(?:[{_SAFE}/]++|%[0-9A-Fa-f]{{2}})*+"
_QRUN = rf"(?:[{_SAFE}/?]++|%[0-9A-Fa-f]{{2}})"
_QCHARS = rf"{_QRUN}*+"
_PLAIN_URL = re.compile(
    rf"(https?)://([A-Za-z0-9\-._~!$&'()*+,;=:\[\]]++)(/{_PCHARS}|)(\?{_QCHARS})?(?:#{_QCHARS})?"
)
_PLAIN_REFERENCE = re.compile(rf"/(?!/){_PCHARS}(?:\?{_QCHARS})?(?:#{_QCHARS})?")
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")  # httpx removes these: left to it
# The start of a URL whose origin `urlsplit` reads exactly as written: http(s), a host and
# port without user info or brackets, then the path, query, fragment or the end.
_HOST_PORT = r"[A-Za-z0-9\-._~!$&'()*+,=:]++"
_PLAIN_ORIGIN = re.compile(rf"(https?)://({_HOST_PORT})(?=[/?#]|\Z)")
# What `urljoin` gives back as it is written (absolute) or appended to the base's origin
# (from the root): no dot segment, empty segment or `;` in the path, and no empty query
# or fragment, all of which its parse would rewrite.
_SEGMENT = rf"/(?!\.\.?(?:[/?#]|\Z))(?:[{_SAFE.replace(';', '')}]++|%[0-9A-Fa-f]{{2}})++"
_PLAIN_JOIN = re.compile(
    rf"(https?://{_HOST_PORT})?(?:(?:{_SEGMENT})++/?|/)(?:\?{_QRUN}++)?(?:#{_QRUN}++)?"
)


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """Where a GET goes, and its request target and Host header as httpx would send them."""

    scheme: bytes
    host: str  # as connected to: IDNA-encoded, an IPv6 address without its brackets
    port: int
    target: bytes  # the path and the query
    host_header: bytes


def request_target(url: str) -> RequestTarget:
    """`url` as `RequestTarget`; `InvalidRequestURL` when httpx would refuse it.

    A plain URL (see `_PLAIN_URL`) is split here, its `host:port` checked by httpx once per
    origin; any other goes through `parse_url` (`tests/test_properties.py` holds the two
    ways to the same answers).
    """
    plain = _PLAIN_URL.fullmatch(url)
    if plain is None or _DOT_SEGMENT.search(plain.group(3)):
        return _target_of(parse_url(url))
    scheme, netloc, path, query = plain.groups()
    origin = _origin_target(scheme, netloc)
    target = (path or "/") + (query or "")
    return RequestTarget(
        origin.scheme, origin.host, origin.port, target.encode("ascii"), origin.host_header
    )


@functools.lru_cache(maxsize=256)
def _origin_target(scheme: str, netloc: str) -> RequestTarget:
    return _target_of(parse_url(f"{scheme}://{netloc}/"))


def _target_of(url: httpx.URL) -> RequestTarget:
    scheme = url.raw_scheme
    port = url.port or DEFAULT_PORTS.get(scheme.decode("ascii"), 0)
    return RequestTarget(scheme, url.raw_host.decode("ascii"), port, url.raw_path, url.netloc)


@functools.lru_cache(maxsize=1024)
def _http_origin(url: str) -> tuple[str, str, int] | None:
    """Scheme, lower-case host and port of an http(s) URL without user info; None otherwise.

    A URL is asked about more than once on its way (found on a page, then checked before
    each try): recent answers are kept, and a plainly written origin is read once.
    """
    plain = _PLAIN_ORIGIN.match(url)
    if plain is not None:
        return _http_origin_of(f"{plain.group(1)}://{plain.group(2)}")
    return _http_origin_of(url)


@functools.lru_cache(maxsize=256)
def _http_origin_of(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username:
            return None
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower(), port


class Allowlist:
    """Hosts that may be requested: `host` (default port only) or `host:port` entries."""

    def __init__(self, entries: list[str]):
        self._exact: set[tuple[str, int]] = set()
        self._default_port: set[str] = set()
        for entry in entries:
            host, port = split_host_port(entry.lower())
            if port is None:
                self._default_port.add(host)
            else:
                self._exact.add((host, port))

    @classmethod
    def from_settings(cls, settings: FetchSettings) -> Allowlist:
        """The site, the image hosts, and the API host when an API key is set."""
        entries = [origin_entry(settings.tmdb_base_url), *settings.poster_hosts]
        if settings.tmdb_api_key is not None:
            entries += [
                origin_entry(settings.tmdb_api_url),
                origin_entry(settings.tmdb_image_base_url),
            ]
        return cls(entries)

    def allows(self, url: str) -> bool:
        """Whether `url` is http(s), without user info, to an allowed host and port."""
        origin = _http_origin(url)
        if origin is None:
            return False
        scheme, host, port = origin
        if (host, port) in self._exact:
            return True
        return host in self._default_port and port == DEFAULT_PORTS[scheme]

    def check(self, url: str) -> None:
        """Raise `HostNotAllowed` unless the URL may be requested."""
        if not self.allows(url):
            raise HostNotAllowed(
                f"refused to request {display_url(url)}: host not on the allowlist"
            )
