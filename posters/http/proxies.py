"""Going out through the proxies the environment names, only when asked to.

Off by default (FETCH_USE_ENV_PROXY=false): a worker should not pick up a proxy meant
for something else. When on, HTTPS_PROXY, HTTP_PROXY and ALL_PROXY are used, except for
the hosts NO_PROXY names: `*` (every host), a host or an address (that host, and for a
name its subdomains), or `.domain` (its subdomains only).

What a proxy changes for safety: the allowlist still applies to the real target URL
(every hop is checked before it is requested), but the address check after DNS
(`posters.http.connections`) vets the connections this process makes, and through a
proxy that is the one to the proxy, which the operator configured and which is trusted.
The proxy resolves the target's name itself, so an allowed name that resolves to a
private address is no longer caught here: the proxy has to refuse private destinations.
Proxied requests go through httpx's own transport, with the same TLS trust as direct ones.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass

import httpx

from poster_genres.posters.http.response import Response
from poster_genres.posters.http.transport import HttpxTransport, Timeouts, Transport
from poster_genres.posters.http.urls import Target


@dataclass(frozen=True)
class ProxyRoutes:
    """Which proxy (if any) a target is requested through."""

    by_scheme: dict[str, str]  # "http" / "https" -> proxy URL
    no_proxy: tuple[str, ...] = ()  # lower-case NO_PROXY entries

    @classmethod
    def from_env(
        cls, http: str | None, https: str | None, every: str | None, no_proxy: str
    ) -> ProxyRoutes | None:
        """The routes the variables name; None when no request would use a proxy."""
        entries = tuple(e.strip().lower() for e in no_proxy.split(",") if e.strip())
        by_scheme = {}
        for scheme, proxy in (("http", http or every), ("https", https or every)):
            if proxy and (url := proxy.strip()):
                by_scheme[scheme] = url if "://" in url else f"http://{url}"
        if not by_scheme or "*" in entries:
            return None
        return cls(by_scheme, entries)

    def proxy_for(self, target: Target) -> str | None:
        """The proxy URL to request `target` through; None: directly."""
        if any(_bypasses(target.host, entry) for entry in self.no_proxy):
            return None
        return self.by_scheme.get(target.scheme)


def _bypasses(host: str, entry: str) -> bool:
    """Whether the NO_PROXY `entry` names `host` (see the module)."""
    entry = entry.partition("://")[2] or entry
    entry = entry.strip("[]")
    try:
        return ipaddress.ip_address(entry) == ipaddress.ip_address(host)
    except ValueError:
        pass
    if entry.startswith("."):
        return host.endswith(entry)
    return host == entry or (entry != "localhost" and host.endswith("." + entry))


class ProxiedTransport:
    """Sends each request directly or through its proxy, as `ProxyRoutes` say."""

    def __init__(
        self,
        direct: Transport,
        routes: ProxyRoutes,
        ssl_context: ssl.SSLContext,
        timeouts: Timeouts,
        max_connections: int,
    ):
        self._direct = direct
        self._routes = routes
        limits = httpx.Limits(max_connections=max_connections)
        self._proxied = {
            url: HttpxTransport(
                httpx.AsyncHTTPTransport(
                    proxy=url, verify=ssl_context, trust_env=False, limits=limits
                ),
                timeouts,
            )
            for url in set(routes.by_scheme.values())
        }

    async def send(self, target: Target, headers: dict[str, str]) -> Response:
        proxy = self._routes.proxy_for(target)
        transport = self._direct if proxy is None else self._proxied[proxy]
        return await transport.send(target, headers)

    async def aclose(self) -> None:
        await self._direct.aclose()
        for transport in self._proxied.values():
            await transport.aclose()
