"""Hostile HTTP from the poster site, SSRF through redirects and DNS, and secrets.

Everything runs over loopback against the TMDB stand-in. No test lets a packet leave
the machine: addresses off loopback are refused by the allowlist or the address guard
before any connection, and `no_egress` makes any other connect attempt fail the test.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import struct
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from PIL import Image
from pydantic import SecretStr

from demo.tmdb import StandInMovie, TmdbStandIn, page_html, respond
from poster_genres.common.kafka import security_config
from poster_genres.common.logs import RedactFilter
from poster_genres.posters import FetchSettings, HostNotAllowed, PosterError, PosterFetcher
from poster_genres.posters.http.connections import (
    AddressGuard,
    Connection,
    Dial,
    blocked_reason,
    literal_address,
)
from poster_genres.schemas import ErrorCode
from poster_genres.worker.settings import WorkerSettings
from tests.fixtures import (
    COLOURS,
    consume_all,
    event,
    poster_bytes,
    produce,
    rss_kib,
    start_worker,
    stop,
    worker_env,
)

Route = Callable[[BaseHTTPRequestHandler], None]
MiB = 1024 * 1024


# -- hostile answers -----------------------------------------------------------------------


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` (its pixel data is a token few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is patched to claim `width` x `height`."""
    content = bytearray(poster_bytes(COLOURS["Red"]))
    sof = content.index(b"\xff\xc0")
    content[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(content)


def redirect(location: str, status: int = 302) -> Route:
    return lambda h: h.reply(status, b"", "text/html", {"Location": location})  # type: ignore[attr-defined]


def serve(body: bytes, content_type: str | None, headers: dict[str, str] | None = None) -> Route:
    """Answer 200 with `body`; no Content-Type header at all when `content_type` is None."""

    return lambda h: respond(h, 200, body, content_type, headers)


class Stream:
    """Send `total` bytes in chunks, optionally lying about or omitting the length; count what got out."""

    def __init__(
        self,
        total: int,
        content_type: str,
        declare: bool,
        chunk: int = 64 * 1024,
        pause_s: float = 0.0,
    ):
        self.total, self.content_type, self.declare, self.chunk, self.pause_s = (
            total,
            content_type,
            declare,
            chunk,
            pause_s,
        )
        self.sent = 0

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", self.content_type)
        if self.declare:
            h.send_header("Content-Length", str(self.total))
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        try:
            while self.sent < self.total:
                piece = b"\xff" * min(self.chunk, self.total - self.sent)
                h.wfile.write(piece)
                h.wfile.flush()
                self.sent += len(piece)
                if self.pause_s:
                    time.sleep(self.pause_s)
        except OSError:  # the client hung up, as it should
            h.close_connection = True


def install_hostile(standin: TmdbStandIn) -> tuple[dict[int, tuple[str, str]], dict[str, Stream]]:
    """Movies 701.. each misbehave one way; returns {tmdb_id: (error code, detail fragment)} and the streams."""
    base = standin.base_url
    port = standin.host.rsplit(":", 1)[1]
    good = poster_bytes(COLOURS["Blue"])
    expected: dict[int, tuple[str, str]] = {}
    streams: dict[str, Stream] = {}

    def page_to(tmdb_id: int, image_url: str) -> None:
        standin.movies[tmdb_id] = StandInMovie(
            good, title=f"Hostile {tmdb_id}", poster_url=image_url
        )

    def image_route(tmdb_id: int, route: Route, code: str, fragment: str) -> None:
        path = f"/img/{tmdb_id}.jpg"
        page_to(tmdb_id, f"{base}{path}")
        standin.routes[path] = route
        expected[tmdb_id] = (code, fragment)

    def page_route(tmdb_id: int, route: Route, code: str, fragment: str) -> None:
        standin.routes[f"/movie/{tmdb_id}"] = route
        expected[tmdb_id] = (code, fragment)

    page_route(701, redirect("/movie/701-loop"), "fetch_failed", "redirects")
    standin.routes["/movie/701-loop"] = redirect("/movie/701")
    page_route(702, redirect(f"http://127.0.0.2:{port}/movie/702"), "host_not_allowed", "127.0.0.2")
    page_route(
        703,
        redirect("http://169.254.169.254/latest/meta-data/"),
        "host_not_allowed",
        "169.254.169.254",
    )
    page_route(704, redirect("http://10.0.0.1/admin"), "host_not_allowed", "10.0.0.1")
    page_route(705, redirect("file:///etc/passwd"), "host_not_allowed", "file:///etc/passwd")
    page_route(706, redirect(f"gopher://127.0.0.1:{port}/_SET"), "host_not_allowed", "gopher://")
    page_route(
        707, redirect(f"http://user:pw@127.0.0.1:{port}/movie/1"), "host_not_allowed", "allowlist"
    )
    page_to(708, "http://images.example.net/p/708.jpg")
    expected[708] = ("host_not_allowed", "images.example.net")
    image_route(
        709, serve(b"\xff" * (50 * MiB), "image/jpeg"), "poster_too_large", "52428800 bytes"
    )
    streams["undeclared"] = Stream(50 * MiB, "image/jpeg", declare=False)
    image_route(710, streams["undeclared"], "poster_too_large", "over the cap")
    image_route(
        711, serve(jpeg_declaring(65000, 65000), "image/jpeg"), "poster_too_large", "pixels"
    )
    image_route(
        712, serve(png_declaring(50_000, 50_000), "image/png"), "poster_too_large", "pixels"
    )
    image_route(713, serve(png_declaring(8000, 8000), "image/png"), "poster_too_large", "8000x8000")
    noisy = io.BytesIO()
    Image.frombytes("RGB", (200, 300), bytes(range(251)) * 718).save(noisy, "JPEG")
    image_route(
        714,
        serve(noisy.getvalue()[: len(noisy.getvalue()) // 2], "image/jpeg"),
        "poster_unreadable",
        "decode",
    )
    image_route(
        715,
        serve(b"<html><body>Not found</body></html>", "image/jpeg"),
        "poster_unreadable",
        "not an image",
    )
    streams["trickle"] = Stream(1000, "image/jpeg", declare=True, chunk=1, pause_s=1.0)
    image_route(716, streams["trickle"], "fetch_failed", "took over")
    bomb = gzip.compress(b"<html>" + b" " * (200 * MiB) + b"</html>", 9)
    page_route(
        717,
        serve(bomb, "text/html", {"Content-Encoding": "gzip"}),
        "fetch_failed",
        "decompresses to more than",
    )
    page_route(
        718,
        serve(b"<html>" + b"a" * (3 * MiB) + b"</html>", "text/html"),
        "fetch_failed",
        "over the cap",
    )
    junk = b"".join(
        b'<img class="poster" src="http://evil.example/%d.jpg">' % i for i in range(20_000)
    )
    page_route(
        719,
        serve(b"<html><body>" + junk + b"</body></html>", "text/html"),
        "host_not_allowed",
        "evil.example",
    )
    latin = (
        "<html><body><p>Amélie, ça</p><img src='/nothing.png'></body></html>".encode("latin-1")
        + b"\xff\xfe\x80"
    )
    page_route(
        720, serve(latin, "text/html; charset=x-no-such-charset"), "poster_not_found", "no poster"
    )
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    image_route(721, serve(svg, "image/svg+xml"), "poster_unreadable", "not an image")
    image_route(722, serve(b"", "image/jpeg"), "poster_unreadable", "0 bytes")
    image_route(723, serve(good, None), "poster_unreadable", "untyped")
    image_bomb = gzip.compress(b"\0" * (100 * MiB), 9)
    image_route(
        724,
        serve(image_bomb, "image/png", {"Content-Encoding": "gzip"}),
        "poster_too_large",
        "decompresses",
    )
    image_route(
        725,
        serve(good, "image/jpeg", {"Content-Encoding": "br"}),
        "fetch_failed",
        "content-encoding 'br'",
    )
    page_route(
        726,
        serve(page_html(StandInMovie(good), "javascript:alert(1)").encode(), "text/html"),
        "poster_not_found",
        "no poster",
    )
    no_location: Route = lambda h: h.reply(302, b"", "text/html", {})  # type: ignore[attr-defined]
    page_route(727, no_location, "fetch_failed", "answered 302")  # a redirect to nowhere
    return expected, streams


# -- the fetcher over loopback ------------------------------------------------------------


class NoEgress:
    """The fetcher's dial in tests: connects to 127.0.0.1 only, fails the test otherwise."""

    def __init__(self, inner: Dial):
        self.inner = inner
        self.attempts: list[str] = []

    async def __call__(
        self, origin: tuple[str, str, int], address: str, timeout: float | None
    ) -> Connection:
        self.attempts.append(address)
        if address != "127.0.0.1":
            raise AssertionError(f"a test tried to connect to {address}")
        return await self.inner(origin, address, timeout)


def no_egress(fetcher: PosterFetcher) -> NoEgress:
    egress = NoEgress(fetcher.connector.dial)
    fetcher.connector.dial = egress
    return egress


def fetch_settings(standin: TmdbStandIn, **overrides: Any) -> FetchSettings:
    values: dict[str, Any] = {
        "tmdb_base_url": standin.base_url,
        "poster_hosts": [standin.host],
        "request_timeout_s": 2.0,
        "read_timeout_s": 2.0,
        "fetch_attempts": 2,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "fetch_deadline_s": 20.0,
    }
    values.update(overrides)
    return FetchSettings(**values)


def fetch_all(
    settings: FetchSettings, ids: list[int], **kwargs: Any
) -> tuple[dict[int, Any], NoEgress, PosterFetcher]:
    """Fetch every id concurrently; {id: Poster or the exception}."""

    async def main() -> tuple[dict[int, Any], NoEgress, PosterFetcher]:
        async with PosterFetcher(settings, **kwargs) as fetcher:
            egress = no_egress(fetcher)
            results = await asyncio.gather(*(fetcher.fetch(i) for i in ids), return_exceptions=True)
            return dict(zip(ids, results)), egress, fetcher

    return asyncio.run(main())


@pytest.fixture(scope="module")
def hostile_site() -> Any:
    with TmdbStandIn() as standin:
        expected, streams = install_hostile(standin)
        yield standin, expected, streams


def test_each_hostile_answer_is_a_permanent_error_with_a_clear_code(hostile_site: Any) -> None:
    standin, expected, streams = hostile_site
    assert len(expected) >= 25
    started = time.monotonic()
    results, egress, _ = fetch_all(fetch_settings(standin), sorted(expected))
    took = time.monotonic() - started
    problems = []
    for tmdb_id, (code, fragment) in sorted(expected.items()):
        result = results[tmdb_id]
        if not isinstance(result, PosterError):
            problems.append(f"{tmdb_id}: {result!r}")
        elif (
            result.code != code
            or fragment not in result.detail
            or result.code == ErrorCode.INTERNAL_ERROR
        ):
            problems.append(
                f"{tmdb_id}: {result.code} {result.detail!r}, expected {code} with {fragment!r}"
            )
    # 714 (a truncated JPEG) passes the header check; the model refuses it (see the end-to-end test)
    assert problems == [f"714: {results[714]!r}"], "\n".join(problems)
    assert set(egress.attempts) == {"127.0.0.1"}
    assert streams["undeclared"].sent < 20 * MiB, "the uncapped stream was read far past the cap"
    assert took < 15, f"hostile answers took {took:.1f} s"


@pytest.mark.parametrize(
    "address,blocked",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("255.255.255.255", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:169.254.169.254", True),
        ("::ffff:10.0.0.1", True),
        ("2002:a00:1::", True),
        ("ff02::1", True),
        ("::", True),
        ("93.184.216.34", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_address_classification(address: str, blocked: bool) -> None:
    ip = literal_address(address)
    assert ip is not None
    assert (blocked_reason(ip) is not None) == blocked


def resolver_of(table: dict[str, list[str]], calls: list[str]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return table[host]

    return resolve


def test_the_guard_checks_every_answer_and_trusts_only_configured_literals() -> None:
    calls: list[str] = []
    guard = AddressGuard.from_urls_and_hosts(
        ["http://127.0.0.1:8000"],
        ["image.tmdb.org", "[::1]:9000", "10.1.2.3:80"],
        resolver_of(
            {
                "a.test": ["93.184.216.34"],
                "b.test": ["93.184.216.34", "10.0.0.1"],
                "c.test": ["10.1.2.3"],
            },
            calls,
        ),
    )
    assert guard.trusted == {
        literal_address("127.0.0.1"),
        literal_address("::1"),
        literal_address("10.1.2.3"),
    }
    assert asyncio.run(guard.resolve("a.test", 443)) == ["93.184.216.34"]
    with pytest.raises(HostNotAllowed, match="b.test, which resolves to private address 10.0.0.1"):
        asyncio.run(guard.resolve("b.test", 443))
    assert asyncio.run(guard.resolve("c.test", 80)) == [
        "10.1.2.3"
    ]  # a configured literal is trusted
    with pytest.raises(HostNotAllowed, match="127.0.0.2"):
        asyncio.run(guard.resolve("127.0.0.2", 80))
    assert calls == ["a.test", "b.test", "c.test"]


def test_a_name_resolving_to_a_private_address_is_refused_before_connecting() -> None:
    with TmdbStandIn() as standin:
        port = standin.host.rsplit(":", 1)[1]
        settings = fetch_settings(
            standin, tmdb_base_url=f"http://tmdb.test:{port}", poster_hosts=[]
        )
        for answer in (["10.0.0.1"], ["169.254.169.254"], ["127.0.0.1"], ["::ffff:127.0.0.1"]):
            calls: list[str] = []
            results, egress, _ = fetch_all(
                settings, [1], resolver=resolver_of({"tmdb.test": answer}, calls)
            )
            assert isinstance(results[1], HostNotAllowed), results[1]
            assert "not a public address" in results[1].detail
            assert egress.attempts == [] and calls == ["tmdb.test"]
        assert standin.requests == {}


def test_a_checked_name_is_connected_by_address_with_its_own_host_header() -> None:
    """DNS is asked once per connection and the connection goes to the address that was checked."""
    with TmdbStandIn() as standin:
        standin.movies[3] = StandInMovie(poster_bytes(COLOURS["Green"]))
        port = standin.host.rsplit(":", 1)[1]
        hosts: list[str] = []

        def image(h: BaseHTTPRequestHandler) -> None:
            hosts.append(h.headers["Host"])
            serve(poster_bytes(COLOURS["Green"]), "image/png")(h)

        standin.routes["/posters/3.png"] = image
        standin.movies[3].poster_url = f"http://posters.test:{port}/posters/3.png"
        answers = iter([["127.0.0.1"], ["169.254.169.254"], ["10.0.0.1"]])  # a rebinding resolver

        calls: list[str] = []

        async def rebinding(host: str, port: int) -> list[str]:
            calls.append(host)
            return next(answers)

        settings = fetch_settings(standin, poster_hosts=[f"posters.test:{port}"])
        results, egress, fetcher = fetch_all(settings, [3], resolver=rebinding)
        assert results[3].url.startswith("http://posters.test:")
        assert hosts == [f"posters.test:{port}"]
        assert calls == [
            "posters.test"
        ]  # resolved once; the connect used that answer, not a second lookup
        connects = fetcher.connector.connects
        assert ("posters.test", "127.0.0.1", int(port)) in connects
        assert [c for c in connects if c[0] == "posters.test"] == [
            ("posters.test", "127.0.0.1", int(port))
        ]
        assert set(egress.attempts) == {"127.0.0.1"}


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["k3y-0123456789abcdef-SECRET", "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.SIGSECRET"]
)
def test_the_api_key_appears_in_no_error_detail_or_log_record(key: str) -> None:
    with TmdbStandIn() as standin:
        seen_auth: list[str] = []

        def api(h: BaseHTTPRequestHandler) -> None:
            seen_auth.append(h.path + " " + h.headers.get("Authorization", ""))
            if "/movie/1" in h.path:
                h.reply(503, b"down", "text/plain")  # type: ignore[attr-defined]
            elif "/movie/2" in h.path:
                h.reply(
                    302, b"", "text/plain", {"Location": f"http://169.254.169.254/?api_key={key}"}
                )  # type: ignore[attr-defined]
            else:
                h.reply(401, b'{"status_message": "Invalid API key"}', "application/json")  # type: ignore[attr-defined]

        for n in (1, 2, 3):
            standin.routes[f"/3/movie/{n}"] = api
        settings = fetch_settings(
            standin,
            tmdb_api_key=SecretStr(key),
            tmdb_api_url=f"{standin.base_url}/3",
            tmdb_image_base_url=f"{standin.base_url}/t/p/w500",
        )
        records: list[logging.LogRecord] = []
        masked: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record)
                masked.append(self.format(record))

        keep = Keep(logging.DEBUG)
        keep.addFilter(RedactFilter())
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(keep)
        root.setLevel(logging.DEBUG)
        for name in ("httpx", "httpcore", "poster_genres"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        try:
            results, _, _ = fetch_all(settings, [1, 2, 3])
        finally:
            root.removeHandler(keep)
            root.setLevel(old_level)
        assert all(key in line for line in seen_auth)  # the stand-in did get the key
        assert [type(results[n]).__name__ for n in (1, 2, 3)] == [
            "FetchFailed",
            "HostNotAllowed",
            "PosterError",
        ]
        for n in (1, 2, 3):
            assert key not in results[n].detail and key not in str(results[n])
        ours = [r.getMessage() for r in records if r.name.startswith("poster_genres.")]
        assert ours and not any(key in message for message in ours)
        assert records and not any(key in line for line in masked)  # httpx's own lines, once masked
        assert "SECRET" not in repr(settings) and "SIGSECRET" not in str(settings.model_dump())


def test_kafka_tls_and_sasl_settings_map_to_kafka_python_options(tmp_path: Any) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    settings = WorkerSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="genre",
        kafka_sasl_password=SecretStr("s3cr3t-pass"),
        kafka_ssl_cafile=ca,
        kafka_ssl_certfile=cert,
        kafka_ssl_keyfile=key,
    )
    assert security_config(settings) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "genre",
        "sasl_plain_password": "s3cr3t-pass",
        "ssl_cafile": str(ca),
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
    }
    assert "s3cr3t-pass" not in repr(settings)
    assert security_config(WorkerSettings()) == {"security_protocol": "PLAINTEXT"}
    from kafka import KafkaProducer

    unknown = set(security_config(settings)) - set(KafkaProducer.DEFAULT_CONFIG)
    assert not unknown, f"options kafka-python does not know: {unknown}"


# -- through the worker -------------------------------------------------------------------


@pytest.mark.slow
def test_hostile_sites_through_the_worker_end_as_dead_letters_with_bounded_memory(
    broker, topics, model_dir
):
    with TmdbStandIn() as standin:
        expected, streams = install_hostile(standin)
        for tmdb_id in range(1, 11):
            standin.movies[tmdb_id] = StandInMovie(poster_bytes(COLOURS["Red"]))
        env = worker_env(
            broker,
            topics,
            model_dir,
            standin,
            REQUEST_TIMEOUT_S="2",
            READ_TIMEOUT_S="2",
            FETCH_ATTEMPTS="2",
            FETCH_DEADLINE_S="20",
        )
        process = start_worker(env)
        try:
            produce(broker.bootstrap_servers, topics.input, [event(i) for i in range(1, 6)])
            assert len(consume_all(broker.bootstrap_servers, topics.output, 5, timeout_s=90)) == 5
            before = rss_kib(process.pid)
            produce(
                broker.bootstrap_servers,
                topics.input,
                [event(i) for i in sorted(expected)] + [event(i) for i in range(6, 11)],
            )
            letters = consume_all(broker.bootstrap_servers, topics.dlq, len(expected), timeout_s=90)
            outputs = consume_all(broker.bootstrap_servers, topics.output, 10, timeout_s=20)
            after = rss_kib(process.pid)
            assert process.poll() is None, "the worker died"
        finally:
            out = stop(process)
    assert process.returncode == 0, out[-3000:]
    assert sorted(o["tmdb_id"] for o in outputs) == list(range(1, 11))
    got = {letter["tmdb_id"]: letter for letter in letters}
    assert len(got) == len(letters) == len(expected), out[-3000:]
    wrong = {
        i: (got[i]["error"], got[i]["detail"])
        for i, (code, fragment) in expected.items()
        if got[i]["error"] != code or (fragment not in got[i]["detail"] and i != 714)
    }
    assert not wrong, wrong
    assert (
        got[714]["error"] == "poster_unreadable" and "model could not decode" in got[714]["detail"]
    )
    assert streams["undeclared"].sent < 20 * MiB
    growth = (after - before) / 1024
    assert growth < 200, f"RSS grew by {growth:.0f} MiB"
    print(f"hostile HTTP: {len(expected)} kinds, RSS {before // 1024} -> {after // 1024} MiB")
