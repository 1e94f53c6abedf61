"""Which URLs may be requested, read by one parser, and how a URL is shown in errors and logs.

Every URL that is requested, followed or checked against the allowlist is read by
`parse_target`, into the `Target` that is sent: the allowlist, the rate limits, the
circuit breaker and the connection pool all decide on that one reading. A URL longer than
`MAX_URL_LENGTH`, with user info, or not plain http(s) is refused before it is read further.
URLs are shown without user info or query string wherever they end up in an error or a
log line: in API mode the query carries the key.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import idna

from poster_genres.posters.errors import HostNotAllowed

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 8 * 1024
_DISPLAY_LENGTH = 200
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")  # controls and spaces: never in a request line
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
# what stays as it is written in a path or a query; anything else is percent-encoded (UTF-8)
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_SENDABLE = re.compile(r"[A-Za-z0-9/%!$&'()*+,;=:@._~?-]*")  # needs no quoting (`?` in a query)


class InvalidTarget(ValueError):
    """A URL that cannot be requested as it is written."""


class RefusedTarget(InvalidTarget):
    """A well-formed URL that is never requested: not http(s), or with user info."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a GET goes: its origin, and the request target and Host header that are sent."""

    scheme: str  # "http" or "https"
    host: str  # lower case, IDNA-encoded; an IPv6 address without brackets
    port: int
    target: bytes  # the path and the query, as sent
    host_header: bytes

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def host_key(self) -> str:
        """`host:port`, the unit of the circuit breaker and the rate limits."""
        return f"{self.host}:{self.port}"


def parse_target(url: str) -> Target:
    """`url` as the `Target` that is sent; `InvalidTarget` says why it cannot be requested."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidTarget(f"the URL is {len(url)} characters long, over {MAX_URL_LENGTH}")
    return _parse(url)


@functools.lru_cache(maxsize=1024)  # at most MAX_URL_LENGTH a key: a bounded cache
def _parse(url: str) -> Target:
    if _UNSENDABLE.search(url):
        raise InvalidTarget("a space or a control character in the URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port that is not a number below 65536, a broken [v6]
        raise InvalidTarget(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise RefusedTarget(f"not an http(s) URL (scheme {scheme[:20]!r})")
    if "@" in parts.netloc:
        raise RefusedTarget("a URL with user info")
    host = _host(parts.hostname or "")
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port is None else f"{shown}:{port}"
    path, query = parts.path or "/", parts.query
    if _SENDABLE.fullmatch(path) is None:
        path = quote(path, safe=_PATH_SAFE)
    if query and _SENDABLE.fullmatch(query) is None:
        query = quote(query, safe=_QUERY_SAFE)
    query = "?" + query if query else ""
    target = (path + query).encode("ascii")
    return Target(scheme, host, port or DEFAULT_PORTS[scheme], target, host_header.encode("ascii"))


def _host(host: str) -> str:
    """The host as connected to: a checked IP address, or a name in IDNA's ASCII form."""
    if not host:
        raise InvalidTarget("the URL has no host")
    if ":" in host:
        if "%" in host:  # a zone names an interface of this machine: never a poster host
            raise InvalidTarget("an IPv6 address with a zone")
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise InvalidTarget(f"{host[:60]!r} is not an IPv6 address") from None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidTarget(f"{host[:60]!r} is not a valid host name: {exc}") from None
    if _HOST_NAME.fullmatch(host) is None:
        raise InvalidTarget(f"{host[:60]!r} is not a valid host name")
    if "xn--" in host:  # an encoded label must decode
        try:
            idna.decode(host)
        except idna.IDNAError as exc:
            raise InvalidTarget(f"{host[:60]!r} is not a valid host name: {exc}") from None
    return host


def host_key(url: str) -> str:
    """`host:port` of `url` (see `Target.host_key`); empty for a URL that cannot be requested."""
    try:
        return parse_target(url).host_key
    except InvalidTarget:
        return ""


def join_url(base: str, ref: str) -> str:
    """`ref` (a link or a redirect's `Location`) made absolute against `base`.

    A reference that names its own http(s) scheme is already absolute: it is read as it is
    written, by `parse_target`, when it is requested.
    """
    if len(ref) > MAX_URL_LENGTH:
        raise InvalidTarget(f"the URL is {len(ref)} characters long, over {MAX_URL_LENGTH}")
    if ref[:8].lower().startswith(("http://", "https://")):
        return ref
    return urljoin(base, ref)


def display_url(url: str) -> str:
    """`url` for errors and logs: no user info, no query string, at most 200 characters."""
    try:
        parts = urlsplit(url[:MAX_URL_LENGTH])
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        shown = f"{parts.scheme}://{host}{port}{parts.path}"
    except ValueError:  # not a URL, but it may still carry a key or a password
        shown = url.partition("?")[0].rpartition("@")[2]
    return shown if len(shown) <= _DISPLAY_LENGTH else shown[:_DISPLAY_LENGTH] + "..."


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


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of `url`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def origin_entry(url: str) -> str:
    """The `host[:port]` entry that names the origin of `url`."""
    target = parse_target(url)
    host = f"[{target.host}]" if ":" in target.host else target.host
    explicit = urlsplit(url).port
    return f"{host}:{explicit}" if explicit else host


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

    def allows(self, url: str) -> bool:
        """Whether `url` can be requested and its host and port are on the list."""
        try:
            return self._lists(parse_target(url))
        except InvalidTarget:
            return False

    def check(self, target: Target, url: str) -> None:
        """Raise `HostNotAllowed` unless `target` (read from `url`) may be requested."""
        if not self._lists(target):
            raise HostNotAllowed(
                f"refused to request {display_url(url)}: host not on the allowlist"
            )

    def _lists(self, target: Target) -> bool:
        if (target.host, target.port) in self._exact:
            return True
        return target.host in self._default_port and target.port == DEFAULT_PORTS[target.scheme]
