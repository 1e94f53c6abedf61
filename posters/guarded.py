"""One GET through the allowlist and the circuit breaker, with redirects followed by hand.

Every hop is read by `parse_target`, checked against the allowlist before it is
requested, waits for its host's rate limit, and tells the breaker whether its host is up.
A request's own headers (the API's credentials) go only to the origin it was made for,
and no hop leaves https for http. Connections themselves go through
`posters.http.connections.Connector` (the SSRF guard after DNS).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from poster_genres.posters.errors import (
    HostNotAllowed,
    InvalidURL,
    MovieNotFound,
    PosterError,
    PosterNotFound,
    TransientError,
)
from poster_genres.posters.http.bodies import Enough, discard_body, read_capped
from poster_genres.posters.http.response import Response
from poster_genres.posters.http.transport import Transport
from poster_genres.posters.http.urls import (
    Allowlist,
    InvalidTarget,
    RefusedTarget,
    Target,
    display_url,
    join_url,
    parse_target,
)
from poster_genres.posters.policy.breaker import CircuitBreaker, CircuitOpen
from poster_genres.posters.policy.retry import Pace, parse_retry_after

_HTTPX_LOG = logging.getLogger("httpx")
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
HOST_DOWN_STATUSES = frozenset({500, 502, 503, 504})  # count against the host's circuit


@dataclass(frozen=True)
class Request:
    """What to GET, the cap on its body, and whether an image is expected.

    `headers` are sent to the origin of `url` only (a redirect elsewhere goes without them).
    `watch(url, encoding)` makes, for each response read, an `Enough` that stops reading
    once the body so far will do (the final URL and the charset are known by then).
    """

    url: str
    max_bytes: int
    accept: str
    image: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    watch: Callable[[str, str | None], Enough] | None = None


@dataclass
class Body:
    """The body of a final (non-redirect) 2xx response, read within the cap."""

    url: str
    content: bytes
    content_type: str
    encoding: str | None


class _HostHealth:
    """What one hop told the breaker about its host: at most one verdict per hop."""

    def __init__(self, breaker: CircuitBreaker, host: str, probe: bool):
        self.breaker, self.host, self.probe = breaker, host, probe
        self.known = False
        self.sent = False  # the request went out (it may have waited for its rate limit before)

    def failed(self, detail: str) -> None:
        if not self.known:
            self.known = True
            self.breaker.failure(self.host, detail, self.probe)

    def up(self) -> None:
        """The host answered."""
        self.known = True
        self.breaker.success(self.host)

    def answered(self, status: int) -> None:
        """Any answer but a 5xx shows the host is up, even a 404 or a 429."""
        if status in HOST_DOWN_STATUSES:
            self.failed(f"answered {status}")
        else:
            self.up()

    def settle(self) -> None:
        """A probe that learnt nothing (refused locally, say) lets another one go."""
        if self.probe and not self.known:
            self.breaker.release(self.host)


class GuardedClient:
    """GETs over one `Transport`, each hop allowlisted and reported to the breaker."""

    def __init__(
        self,
        transport: Transport,
        headers: dict[str, str],
        allowlist: Allowlist,
        breaker: CircuitBreaker,
        max_redirects: int,
    ):
        self.transport = transport
        self.headers = headers  # sent on every request (User-Agent, Accept-Language)
        self.allowlist = allowlist
        self.breaker = breaker
        self.max_redirects = max_redirects

    async def get(self, request: Request, probe: bool, pace: Pace) -> Body:
        """One GET, following redirects by hand so that every hop is checked.

        `probe`: this request is the one the breaker let out to test a host that is down;
        `pace(url)` is awaited before each hop is sent (the host's rate limit).
        """
        plain = {**self.headers, "Accept": request.accept}
        plain["Accept-Encoding"] = "identity" if request.image else "gzip, deflate"
        own = {**plain, **request.headers}
        url, first = request.url, _target(request.url)
        target, secure = first, False
        for hop in range(self.max_redirects + 1):
            self.allowlist.check(target, url)
            if secure and target.scheme == "http":
                raise InvalidURL(f"a redirect from https to {display_url(url)}: not followed")
            secure = target.scheme == "https"
            headers = own if target.origin == first.origin else plain
            answer = await self._hop(url, target, headers, request, probe and hop == 0, pace)
            if isinstance(answer, Body):
                return answer
            url, target = answer, _target(answer)
        raise PosterError(f"more than {self.max_redirects} redirects from {display_url(url)}")

    async def _hop(
        self,
        url: str,
        target: Target,
        headers: dict[str, str],
        request: Request,
        probe: bool,
        pace: Pace,
    ) -> Body | str:
        """Request `url` once: the final body, or the URL it redirects to."""
        host = target.host_key
        if not probe and self.breaker.is_open(host):
            raise CircuitOpen(host)
        health = _HostHealth(self.breaker, host, probe)
        try:
            await pace(url)
            answer = await self._send(url, target, headers, health)
            try:
                health.answered(answer.status)
                if not answer.is_success:
                    await discard_body(answer)  # so that the connection can be reused
                if answer.is_redirect:
                    return _redirect_target(url, answer.headers["location"])
                _raise_for_status(answer, url, request.image, host)
                return await _read(url, answer, request)
            finally:
                await answer.aclose()
        except asyncio.CancelledError:  # the request timeout (a slow host) or shutdown
            if health.sent:
                health.failed(f"no complete answer from {display_url(url)} in time")
            raise
        finally:
            health.settle()

    async def _send(
        self, url: str, target: Target, headers: dict[str, str], health: _HostHealth
    ) -> Response:
        """Send the request and read the answer's head; connection failures are transient.

        The httpx error is not chained: its message can quote a request header, and the
        API token is one.
        """
        health.sent = True
        try:
            answer = await self.transport.send(target, headers)
        except httpx.TimeoutException:
            detail = f"timed out requesting {display_url(url)}"
            health.failed(detail)
            raise TransientError(detail, host=health.host) from None
        except httpx.TransportError as exc:
            detail = f"could not reach {display_url(url)}: {type(exc).__name__}"
            health.failed(detail)
            raise TransientError(detail, host=health.host) from None
        _log_request(url, answer)
        return answer


def _target(url: str) -> Target:
    """`url` as it is requested; `InvalidURL` when it cannot be."""
    try:
        return parse_target(url)
    except RefusedTarget as exc:
        raise HostNotAllowed(f"refused to request {display_url(url)}: {exc}, not on the allowlist")
    except InvalidTarget as exc:
        raise InvalidURL(f"cannot request {display_url(url)!r}: {exc}") from None


async def _read(url: str, answer: Response, request: Request) -> Body:
    """The body of a 2xx answer, within its cap, no further than `request.watch` needs."""
    encoding = answer.charset
    enough = request.watch(url, encoding) if request.watch is not None else None
    content = await read_capped(answer, url, request.max_bytes, request.image, enough)
    return Body(url, content, answer.content_type, encoding)


def _redirect_target(url: str, location: str) -> str:
    """Where a redirect from `url` leads; refuse a `Location` that is not a URL."""
    try:
        joined = join_url(url, location)
        parse_target(joined)
    except RefusedTarget:  # refused when it is requested
        return joined
    except ValueError as exc:  # InvalidTarget, or a location urljoin cannot read
        raise InvalidURL(f"{display_url(url)} redirects to an invalid URL: {exc}") from None
    return joined


def _log_request(url: str, answer: Response) -> None:
    """The line `AsyncClient.send` would log, on httpx's logger (API keys are masked in logs)."""
    if _HTTPX_LOG.isEnabledFor(logging.INFO):
        _HTTPX_LOG.info(
            'HTTP Request: GET %s "%s %d %s"', url, answer.version, answer.status, answer.reason
        )


def _raise_for_status(answer: Response, url: str, image: bool, host: str) -> None:
    """Raise the error a non-2xx status means: transient, not found, or other."""
    if answer.is_success:
        return
    status = answer.status
    what = f"GET {display_url(url)} answered {status}"
    if status in RETRY_STATUSES:
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        raise TransientError(what, retry_after, host=host)
    if status in (404, 410):
        raise PosterNotFound(what) if image else MovieNotFound(what)
    raise PosterError(what)
