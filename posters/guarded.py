"""One GET through the allowlist and the circuit breaker, with redirects followed by hand.

httpx would follow a redirect to any host; here every hop is checked against the
allowlist before it is requested, waits for its host's rate limit, and tells the breaker
whether its host is up. Connections themselves go through `posters.net.CheckedBackend`
(the SSRF guard after DNS).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from posters.answer import Answer
from posters.body import Enough, discard_body, read_capped
from posters.breaker import CircuitBreaker, CircuitOpen
from posters.errors import (
    InvalidURL,
    MovieNotFound,
    PosterError,
    PosterNotFound,
    TransientError,
)
from posters.retry import Pace, parse_retry_after
from posters.transport import PosterTransport, direct_head, header_fields
from posters.urls import (
    Allowlist,
    InvalidRequestURL,
    RequestTarget,
    display_url,
    host_key,
    join_url,
    parse_url,
    request_target,
    url_problem,
)

_HTTPX_LOG = logging.getLogger("httpx")
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
HOST_DOWN_STATUSES = frozenset({500, 502, 503, 504})  # count against the host's circuit


@dataclass(frozen=True)
class Request:
    """What to GET, the cap on its body, and whether an image is expected.

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
class Response:
    """A final (non-redirect) 2xx answer, its body read within the cap."""

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
    """GETs over a shared `httpx.AsyncClient`, each hop allowlisted and reported to the breaker."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        allowlist: Allowlist,
        breaker: CircuitBreaker,
        max_redirects: int,
    ):
        self._client = client
        # httpx's own routing (proxy mounts); checked here so that an httpx without it fails
        # at start rather than on the first poster
        route: Callable[[httpx.URL], httpx.AsyncBaseTransport] = client._transport_for_url
        self._transport_for = route
        # without proxies, every GET goes to the fetcher's own transport, without httpx's models
        transport = client._transport
        direct = isinstance(transport, PosterTransport) and not client._mounts
        self._direct = transport if direct else None
        self._timeouts = client.timeout.as_dict()
        self._fields: dict[tuple[tuple[str, str], ...], bytes] = {}  # header lines, by headers
        self.allowlist = allowlist
        self.breaker = breaker
        self.max_redirects = max_redirects

    async def get(self, request: Request, probe: bool, pace: Pace) -> Response:
        """One GET, following redirects by hand so that every hop is checked.

        `probe`: this request is the one the breaker let out to test a host that is down;
        `pace(url)` is awaited before each hop is sent (the host's rate limit).
        """
        headers = {"Accept": request.accept, **request.headers}
        headers["Accept-Encoding"] = "identity" if request.image else "gzip, deflate"
        url = request.url
        for hop in range(self.max_redirects + 1):
            answer = await self._hop(url, headers, request, probe and hop == 0, pace)
            if isinstance(answer, Response):
                return answer
            url = answer
        raise PosterError(f"more than {self.max_redirects} redirects from {display_url(url)}")

    async def _hop(
        self, url: str, headers: dict[str, str], request: Request, probe: bool, pace: Pace
    ) -> Response | str:
        """Request `url` once: the final response, or the URL it redirects to."""
        try:
            target = request_target(url)
        except InvalidRequestURL as exc:
            raise InvalidURL(f"cannot request {display_url(url)!r}: {exc}") from None
        self.allowlist.check(url)
        host = host_key(url)
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
        self, url: str, target: RequestTarget, headers: dict[str, str], health: _HostHealth
    ) -> Answer:
        """Send the request and read the answer's head; connection failures are transient.

        Without proxies the request goes straight to the fetcher's own transport, its head
        written from `target` and the client's headers: no `httpx.Request`, `httpx.URL` or
        `httpx.Response` is built (docs/performance.md). Otherwise it goes to the transport
        httpx's client routes its URL to (a proxy's, or the fetcher's own), without
        `AsyncClient.send`: its auth, redirect, hook and cookie steps do nothing for the
        fetcher (redirects are followed here, hop by hop).

        The httpx error is not chained: its message can quote a request header, and the
        API token is one.
        """
        health.sent = True
        try:
            if self._direct is not None:
                head = direct_head(target, self._header_fields(headers))
                answer = await self._direct.get(target, head, self._timeouts)
            else:
                request = self._client.build_request("GET", parse_url(url), headers=headers)
                response = await self._transport_for(request.url).handle_async_request(request)
                response.request = request
                answer = Answer.of_httpx(response)
            _log_request(url, answer)
            return answer
        except httpx.TimeoutException:
            detail = f"timed out requesting {display_url(url)}"
            health.failed(detail)
            raise TransientError(detail, host=health.host) from None
        except httpx.TransportError as exc:
            detail = f"could not reach {display_url(url)}: {type(exc).__name__}"
            health.failed(detail)
            raise TransientError(detail, host=health.host) from None

    def _header_fields(self, headers: dict[str, str]) -> bytes:
        """The header lines after Host for `headers`, merged with the client's as httpx does."""
        key = tuple(headers.items())
        fields = self._fields.get(key)
        if fields is None:
            request = self._client.build_request("GET", "http://fields.invalid/", headers=headers)
            raw = [(name, value) for name, value in request.headers.raw if name.lower() != b"host"]
            fields = self._fields[key] = header_fields(raw)
        return fields


async def _read(url: str, answer: Answer, request: Request) -> Response:
    """The body of a 2xx answer, within its cap, no further than `request.watch` needs."""
    encoding = answer.charset
    enough = request.watch(url, encoding) if request.watch is not None else None
    content = await read_capped(answer, url, request.max_bytes, request.image, enough)
    return Response(url, content, answer.content_type, encoding)


def _redirect_target(url: str, location: str) -> str:
    """Where a redirect from `url` leads; refuse a `Location` that is not a URL."""
    problem = url_problem(location)
    if problem is None:
        try:
            return join_url(url, location)
        except ValueError as exc:
            problem = str(exc)
    raise InvalidURL(f"{display_url(url)} redirects to an invalid URL: {problem}")


def _log_request(url: str, answer: Answer) -> None:
    """The line `AsyncClient.send` would log, on httpx's logger (API keys are masked in logs)."""
    if _HTTPX_LOG.isEnabledFor(logging.INFO):
        _HTTPX_LOG.info(
            'HTTP Request: GET %s "%s %d %s"', url, answer.version, answer.status, answer.reason
        )


def _raise_for_status(answer: Answer, url: str, image: bool, host: str) -> None:
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
