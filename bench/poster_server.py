"""A loopback stand-in for themoviedb.org that costs (almost) no CPU: its own process.

    python -m bench.poster_server --dir FOLDER --port PORT [--pages tmdb|small] [--rtt-ms MS]

Everything it answers is built before it prints `serving`: the posters in every
rendition (`bench.images`, written to FOLDER once), and `--page-variants` movie pages,
plain and gzipped. `/movie/<id>` answers page variant `id % variants`.

  - `--pages tmdb` (default): 150-300 KB TMDB-shaped pages (`bench.pages`) whose og:image
    is the w780 rendition; `/movie/603` answers 301 to `/movie/603-<slug>` as the site
    does (`--no-redirect` to skip); gzip when the client accepts it.
  - `--pages small`: a lean ~400-byte page pointing at the w500 rendition, no
    redirect, no gzip.
  - `--rtt-ms`: every answer waits one round trip (a timer, the server keeps serving),
    and the first answer on a new connection `--handshake-rtts` more (TCP + TLS 1.3).
    Bandwidth is not simulated.

HTTP/1.1 keep-alive, an accept backlog of 511 (nginx's default). Control on stdin, one
JSON line back on stdout per command: `stats` (connections accepted, open and peak open,
requests by kind, bytes sent), `peak` (the same, then the peak starts again from the
connections open now), `rtt MS`; `site` describes what is served.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# the project's packages first; this folder's modules (trainer.py, worker.py) must not shadow them
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")
]

from bench import images, pages
from demo.tmdb import slugify

BACKLOG = 511
PAGE_KB = (153, 300)  # a page is a few KB under its drawn size, at least 150 KB
LEAN_RENDITION = "w500"
TMDB_RENDITION = "w780"  # what the og:image of a movie page names
REQUEST_LINE = re.compile(rb"GET (/[^ ]*) HTTP/1\.[01]")
MOVIE = re.compile(rb"/movie/(\d+)(-[^?/]*)?(\?.*)?$")
IMAGE = re.compile(rb"/t/p/([a-z0-9_]+)/([A-Za-z0-9]+\.jpg)$")


def fetched_rendition(mode: str) -> str:
    """The rendition the worker downloads from this mode's pages."""
    return LEAN_RENDITION if mode == "small" else TMDB_RENDITION


def response(
    status: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> bytes:
    lines = [
        f"HTTP/1.1 {status}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Site:
    """Every answer, pre-built; `answer()` only looks things up."""

    def __init__(
        self, folder: Path, n_posters: int, mode: str, origin: str, variants: int, redirect: bool
    ):
        self.mode = mode
        self.redirect = redirect and mode != "small"
        self.names = images.build(folder, n_posters)
        self.images: dict[tuple[bytes, bytes], bytes] = {}
        cache = "public, max-age=31536000"
        for rendition in images.RENDITIONS:
            for path in sorted((folder / rendition).glob("*.jpg")):
                self.images[rendition.encode(), path.name.encode()] = response(
                    "200 OK", path.read_bytes(), "image/jpeg", {"Cache-Control": cache}
                )
        self.not_found = response("404 Not Found", b"not found", "text/plain")
        self.variants = variants
        self.origin = origin
        self.pages: list[tuple[bytes, bytes]] = []  # (plain, gzip) per variant
        self.slugs: list[bytes] = []
        if mode != "small":
            sizes = random.Random(7)
            html_headers = {"Cache-Control": "private, max-age=0", "Vary": "Accept-Encoding"}
            for v in range(variants):
                poster = self.names[v % len(self.names)]
                size = sizes.randint(PAGE_KB[0] * 1024, PAGE_KB[1] * 1024)
                body = pages.tmdb_page(v, origin, poster, size, layout=mode).encode()
                self.pages.append(
                    (
                        response("200 OK", body, "text/html; charset=utf-8", html_headers),
                        response(
                            "200 OK",
                            gzip.compress(body, 6),
                            "text/html; charset=utf-8",
                            {**html_headers, "Content-Encoding": "gzip"},
                        ),
                    )
                )
                self.slugs.append(slugify(pages.movie_title(v)).encode())
        self.lean: dict[bytes, bytes] = {}  # built on first request, tiny

    def describe(self) -> dict[str, Any]:
        """What is served: page sizes (KB, plain and gzipped: min, median, max), redirect, rendition."""

        def kb(sizes: list[int]) -> list[float]:
            return (
                [round(v / 1024, 1) for v in (min(sizes), statistics.median(sizes), max(sizes))]
                if sizes
                else []
            )

        bodies = [
            (len(p) - p.index(b"\r\n\r\n") - 4, len(z) - z.index(b"\r\n\r\n") - 4)
            for p, z in self.pages
        ]
        return {
            "mode": self.mode,
            "page_variants": len(self.pages),
            "page_kb": kb([b[0] for b in bodies]),
            "page_gzip_kb": kb([b[1] for b in bodies]),
            "redirect": self.redirect,
            "rendition": fetched_rendition(self.mode),
            "posters": len(self.names),
        }

    def answer(self, path: bytes, gzip_ok: bool) -> tuple[str, bytes]:
        """(kind, response bytes) for a GET of `path`."""
        if m := IMAGE.match(path):
            out = self.images.get((m.group(1), m.group(2)))
            return ("image", out) if out is not None else ("missing", self.not_found)
        if m := MOVIE.match(path):
            tmdb_id, slug, query = m.group(1), m.group(2), m.group(3) or b""
            v = int(tmdb_id) % self.variants
            if self.mode == "small":
                if tmdb_id not in self.lean:
                    url = f"{self.origin}/t/p/{LEAN_RENDITION}/{self.names[v % len(self.names)]}"
                    body = pages.lean_page(tmdb_id.decode(), url).encode()
                    self.lean[tmdb_id] = response("200 OK", body, "text/html; charset=utf-8")
                return "page", self.lean[tmdb_id]
            if self.redirect and not slug:
                location = (b"/movie/" + tmdb_id + b"-" + self.slugs[v] + query).decode()
                body = f'<html><body>You are being <a href="{self.origin}{location}">redirected</a>.</body></html>'
                return "redirect", response(
                    "301 Moved Permanently",
                    body.encode(),
                    "text/html; charset=utf-8",
                    {"Location": location},
                )
            plain, zipped = self.pages[v]
            return "page", zipped if gzip_ok else plain
        return "missing", self.not_found


class Stats:
    """Counters the bench reads per phase."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.peak_open = 0
        self.requests: Counter[str] = Counter()
        self.bytes_sent = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "open": self.open,
            "peak_open": self.peak_open,
            "requests": dict(self.requests),
            "bytes_sent": self.bytes_sent,
        }


def serve(site: Site, port: int, rtt_s: float, handshake_rtts: int) -> None:
    """Answer HTTP/1.1 GETs on 127.0.0.1:`port` until killed; commands on stdin."""
    stats = Stats()
    delay = {"rtt": rtt_s}

    class Http(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.buffer = b""
            self.answered = 0
            self.due = 0.0  # answers on one connection leave in order
            stats.accepted += 1
            stats.open += 1
            stats.peak_open = max(stats.peak_open, stats.open)

        def connection_lost(self, exc: Exception | None) -> None:
            stats.open -= 1

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
                line, _, headers = head.partition(b"\r\n")
                m = REQUEST_LINE.match(line)
                gzip_ok = b"gzip" in headers.lower() if m else False
                kind, out = site.answer(m.group(1), gzip_ok) if m else ("bad", site.not_found)
                stats.requests[kind] += 1
                stats.bytes_sent += len(out)
                rtts = (
                    (1 + (handshake_rtts if self.answered == 0 else 0)) if delay["rtt"] > 0 else 0
                )
                self.answered += 1
                if rtts:
                    loop = asyncio.get_running_loop()
                    self.due = max(self.due, loop.time() + rtts * delay["rtt"])
                    loop.call_at(self.due, self._write, out)
                else:
                    self.transport.write(out)

        def _write(self, out: bytes) -> None:
            if not self.transport.is_closing():
                self.transport.write(out)

    def command() -> None:
        line = sys.stdin.readline()
        if not line:  # the bench went away
            asyncio.get_running_loop().stop()
            return
        word, *rest = line.split()
        if word == "site":
            print(json.dumps(site.describe()), flush=True)
            return
        if word == "rtt":
            delay["rtt"] = float(rest[0]) / 1000
        answer = {**stats.as_dict(), "rtt_ms": delay["rtt"] * 1000}
        if word == "peak":
            stats.peak_open = stats.open
        print(json.dumps(answer), flush=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Http, "127.0.0.1", port, backlog=BACKLOG)
        loop.add_reader(sys.stdin.fileno(), command)
        print("serving", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(main())
    except RuntimeError:  # loop stopped by end of stdin
        pass


class PosterServer:
    """The bench's handle on the server process: start, read counters, change the RTT, stop."""

    def __init__(
        self,
        folder: Path,
        n_posters: int,
        mode: str = "tmdb",
        rtt_ms: float = 0.0,
        handshake_rtts: int = 2,
        redirect: bool = True,
        variants: int = 64,
    ):
        from demo.broker import free_port

        self.port = free_port()
        self.mode = mode
        self.folder = folder
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.poster_server",
                "--dir",
                str(folder),
                "--posters",
                str(n_posters),
                "--port",
                str(self.port),
                "--pages",
                mode,
                "--rtt-ms",
                str(rtt_ms),
                "--handshake-rtts",
                str(handshake_rtts),
                "--page-variants",
                str(variants),
                *([] if redirect else ["--no-redirect"]),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.names = images.file_names(n_posters)

    def wait_ready(self, timeout: float = 600) -> None:
        """Wait for the server to have built everything (posters on first use: ~20 s)."""
        assert self.process.stdout is not None
        begun = time.monotonic()
        line = self.process.stdout.readline().strip()
        if line != "serving" or time.monotonic() - begun > timeout:
            raise RuntimeError(f"the poster server did not start: {line!r}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def posters(self) -> list[bytes]:
        """The bytes of the rendition the worker downloads, in poster order."""
        return images.load(self.folder, fetched_rendition(self.mode), self.names)

    def command(self, text: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def reset_peak(self) -> dict[str, Any]:
        """The counters, with the peak of open connections since the last reset; then reset it."""
        return self.command("peak")

    def set_rtt(self, ms: float) -> None:
        self.command(f"rtt {ms}")

    def cpu_s(self) -> float:
        from bench.procfs import cpu_s

        return cpu_s(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def capacity(base_url: str, seconds: float = 3.0, concurrency: int = 16) -> float:
    """Page + poster fetches per second the server sustains for an httpx client (client-bound)."""
    import httpx

    og_image = re.compile(r'<meta property="og:image" content="([^"]+)"')

    async def run() -> int:
        done = 0
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, follow_redirects=True) as client:

            async def one(i: int) -> None:
                nonlocal done
                while time.monotonic() < deadline:
                    page = await client.get(f"{base_url}/movie/{i}?language=en-US")
                    m = og_image.search(page.text)
                    assert m, "no og:image on the page"
                    await client.get(m.group(1))
                    done += 1

            await asyncio.gather(*(one(i) for i in range(concurrency)))
        return done

    return asyncio.run(run()) / seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dir", type=Path, required=True, help="folder of the built posters (built if missing)"
    )
    p.add_argument("--posters", type=int, default=48, help="distinct posters")
    p.add_argument("--port", type=int, required=True)
    p.add_argument(
        "--pages",
        choices=("tmdb", "site", "small"),
        default="tmdb",
        help="TMDB-shaped pages (absolute og:image), the same in the site's own layout "
        "(relative paths, a backdrop, a lazy poster), or a lean ~400-byte page",
    )
    p.add_argument("--page-variants", type=int, default=64, help="distinct pages (tmdb mode)")
    p.add_argument(
        "--no-redirect", action="store_true", help="answer /movie/<id> without the slug redirect"
    )
    p.add_argument(
        "--rtt-ms", type=float, default=0.0, help="simulated round trip added to every answer"
    )
    p.add_argument(
        "--handshake-rtts", type=int, default=2, help="extra round trips on a new connection"
    )
    args = p.parse_args(argv)
    origin = f"http://127.0.0.1:{args.port}"
    site = Site(
        args.dir, args.posters, args.pages, origin, args.page_variants, not args.no_redirect
    )
    serve(site, args.port, args.rtt_ms / 1000, args.handshake_rtts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
