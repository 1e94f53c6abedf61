"""FETCH_USE_ENV_PROXY: through a loopback forward proxy, the allowlist and the address guard."""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from demo.tmdb import StandInMovie, TmdbStandIn
from poster_genres.posters import FetchSettings, HostNotAllowed, Poster, PosterFetcher
from poster_genres.posters.fetcher import proxy_routes
from poster_genres.posters.http.proxies import ProxyRoutes
from poster_genres.posters.http.urls import parse_target
from tests.fixtures import COLOURS, poster_bytes

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding"}


class ForwardProxy:
    """A plain-HTTP forward proxy on loopback that resolves every name to 127.0.0.1."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy.seen.append(self.path)
                target = urlsplit(self.path)  # absolute form: http://host:port/path?query
                upstream = http.client.HTTPConnection("127.0.0.1", target.port or 80, timeout=5)
                path = target.path + (f"?{target.query}" if target.query else "")
                upstream.request("GET", path, headers={"Host": target.netloc})
                answer = upstream.getresponse()
                body = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP | {"content-length", "date", "server"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                upstream.close()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as server:
        yield server


def site_settings(tmdb: TmdbStandIn, proxy_url: str, **extra: Any) -> FetchSettings:
    """The stand-in named tmdb.test, which only the proxy (or a private resolver) knows."""
    port = tmdb.host.rsplit(":", 1)[1]
    for tmdb_id in (1, 2):
        tmdb.movies[tmdb_id] = StandInMovie(poster_bytes(COLOURS["Green"]))
        tmdb.movies[tmdb_id].poster_url = f"http://tmdb.test:{port}/t/p/w500/{tmdb_id}.jpg"
    tmdb.movies[3] = StandInMovie(
        poster_bytes(COLOURS["Red"]), poster_url="http://images.example.net/3.jpg"
    )
    values: dict[str, Any] = {
        "tmdb_base_url": f"http://tmdb.test:{port}",
        "poster_hosts": [],
        "http_proxy": SecretStr(proxy_url),
        "fetch_concurrency": 2,
        "fetch_attempts": 1,
    }
    values.update(extra)
    return FetchSettings(**values)


def fetch(settings: FetchSettings, ids: list[int]) -> tuple[list[object], list[str], list[Any]]:
    """Results, the names our resolver was asked for, and the direct connections made."""
    asked: list[str] = []

    async def private_dns(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["10.0.0.1"]  # what a rebound name might answer

    async def run() -> tuple[list[object], list[Any]]:
        async with PosterFetcher(settings, resolver=private_dns) as fetcher:
            results = await asyncio.gather(*map(fetcher.fetch, ids), return_exceptions=True)
            assert fetcher.stats().connections_opened == len(fetcher.connector.connects)
            return results, list(fetcher.connector.connects)

    results, direct = asyncio.run(run())
    return results, asked, direct


def test_env_proxies_are_used_only_when_asked_to(tmdb: TmdbStandIn, proxy: ForwardProxy):
    results, asked, direct = fetch(site_settings(tmdb, proxy.url), [1])
    assert isinstance(results[0], HostNotAllowed) and "10.0.0.1" in results[0].detail
    assert asked == ["tmdb.test"] and proxy.seen == []  # direct, and the guard refused it
    assert direct == []


def test_through_the_proxy_the_allowlist_still_applies_to_the_target(
    tmdb: TmdbStandIn, proxy: ForwardProxy
):
    settings = site_settings(tmdb, proxy.url, fetch_use_env_proxy=True)
    results, asked, direct = fetch(settings, [1, 2, 3])
    assert all(isinstance(r, Poster) for r in results[:2]), results
    assert isinstance(results[2], HostNotAllowed) and "images.example.net" in results[2].detail
    port = tmdb.host.rsplit(":", 1)[1]
    assert f"http://tmdb.test:{port}/t/p/w342/1.jpg" in proxy.seen  # the rendition, proxied
    assert not any("images.example.net" in url for url in proxy.seen)
    # nothing was resolved or dialled here: tmdb.test was resolved by the proxy
    assert asked == [] and direct == []


def test_no_proxy_hosts_are_reached_directly(tmdb: TmdbStandIn, proxy: ForwardProxy):
    settings = site_settings(tmdb, proxy.url, fetch_use_env_proxy=True, no_proxy="tmdb.test")
    results, asked, _ = fetch(settings, [1])
    assert isinstance(results[0], HostNotAllowed) and asked == ["tmdb.test"]
    assert proxy.seen == []


def _routed(routes: ProxyRoutes | None, url: str) -> str | None:
    assert routes is not None
    return routes.proxy_for(parse_target(url))


def test_proxy_settings_come_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", "proxy.corp:3128")
    monkeypatch.setenv("http_proxy", "http://user:pw@10.1.2.3:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal.example,::1,10.0.0.0,example.org")
    assert proxy_routes(FetchSettings()) is None  # off by default
    monkeypatch.setenv("FETCH_USE_ENV_PROXY", "true")
    settings = FetchSettings()
    assert "pw" not in repr(settings)
    routes = proxy_routes(settings)
    assert _routed(routes, "http://image.tmdb.org/x.jpg") == "http://user:pw@10.1.2.3:3128"
    assert _routed(routes, "https://image.tmdb.org/x.jpg") == "http://proxy.corp:3128"
    for direct in (
        "http://localhost:8080/",
        "https://a.internal.example/",
        "http://[::1]/",
        "http://10.0.0.0/",
        "https://example.org/",
        "https://www.example.org/",
    ):
        assert _routed(routes, direct) is None, direct
    for proxied in ("https://internal.example/", "http://notexample.org/", "http://10.0.0.1/"):
        assert _routed(routes, proxied) is not None, proxied
    monkeypatch.setenv("NO_PROXY", "*")
    assert proxy_routes(FetchSettings()) is None
