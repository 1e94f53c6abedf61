"""CPU per request of HTTP clients in this process, on small answers (prints figures; not a test).

    python bench/http_floor.py [--requests 3000] [--concurrency 16] [--rounds 3]

What a GET costs before any of the worker's own work, to set the fetcher's CPU per
poster (`bench/fetch_cpu.py`: three requests a poster) against a floor. A keep-alive
HTTP/1.1 server in another process answers every request at once with the same short
body (`--body-bytes`, Content-Length), so nearly all of the CPU measured is the client's
per-request work. Clients, each in turn on one asyncio loop with `--concurrency`
requests in flight:

- `httpx_mock`: `httpx.AsyncClient` over `httpx.MockTransport`: httpx's client layer
  alone (request and response models, URL, headers), no connection at all;
- `httpx`: `httpx.AsyncClient` with its default transport (httpcore, h11) over loopback,
  the body read with `aread`;
- `httpx_stream`: the same, the body streamed (`client.stream`, `aiter_raw`) as the
  fetcher reads it;
- `project`: the fetcher's own transport (`posters.http.transport.DirectTransport`, its
  connections through the address guard), the body streamed;
- `asyncio_raw`: a bare asyncio stream per connection, the request written by hand and
  the answer read by its Content-Length: the floor of Python's own socket I/O.

CPU time of this process (`time.process_time`), not wall time; the server is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the project's packages first; this folder's modules (trainer.py, worker.py) must not shadow them
sys.path[:] = [str(ROOT)] + [
    p for p in sys.path if Path(p or ".").resolve() not in (ROOT, ROOT / "bench")
]

import httpx

from poster_genres.posters.http.connections import AddressGuard, Connector
from poster_genres.posters.http.transport import DirectTransport, Timeouts
from poster_genres.posters.http.urls import parse_target

SERVER = r"""
import asyncio, sys
BODY = b"x" * int(sys.argv[1])
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
          + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=511)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""

Get = Callable[[], Awaitable[None]]


async def _in_flight(get: Get, requests: int, concurrency: int) -> None:
    left = requests

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await get()

    await asyncio.gather(*(lane() for _ in range(concurrency)))


def _mock_client(body: bytes) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "text/plain"})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


def _client(mode: str, body: bytes, concurrency: int) -> httpx.AsyncClient:
    if mode == "httpx_mock":
        return _mock_client(body)
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=concurrency))


async def _project_round(url: str, body: bytes, args: argparse.Namespace) -> float:
    connector = Connector(AddressGuard(["127.0.0.1"]), httpx.create_ssl_context())
    timeouts = Timeouts(5.0, 10.0, 10.0, 10.0)
    transport = DirectTransport(connector, timeouts, args.concurrency * 2)
    target, headers = parse_target(url), {"Accept": "*/*", "User-Agent": "http_floor"}

    async def get() -> None:
        response = await transport.send(target, headers)
        size = 0
        async for chunk in response.raw_chunks():
            size += len(chunk)
        await response.aclose()
        assert response.status == 200 and size == len(body)

    await _in_flight(get, args.concurrency * 4, args.concurrency)  # warm the pool
    start = time.process_time()
    await _in_flight(get, args.requests, args.concurrency)
    elapsed = time.process_time() - start
    await transport.aclose()
    return elapsed


async def _client_round(url: str, mode: str, body: bytes, args: argparse.Namespace) -> float:
    client = _client(mode, body, args.concurrency)

    async def get() -> None:
        response = await client.get(url)
        assert response.status_code == 200 and len(response.content) == len(body)

    async def stream() -> None:
        async with client.stream("GET", url) as response:
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
            assert response.status_code == 200 and size == len(body)

    async with client:
        one = get if mode in ("httpx_mock", "httpx") else stream
        await _in_flight(one, args.concurrency * 4, args.concurrency)  # warm the pool
        start = time.process_time()
        await _in_flight(one, args.requests, args.concurrency)
        return time.process_time() - start


async def _raw_round(port: int, body: bytes, args: argparse.Namespace) -> float:
    request = f"GET /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n".encode()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get() -> None:
        pair = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        reader, writer = pair
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        content = await reader.readexactly(length)
        assert status == b"200" and len(content) == len(body)
        idle.append(pair)

    await _in_flight(get, args.concurrency * 4, args.concurrency)
    start = time.process_time()
    await _in_flight(get, args.requests, args.concurrency)
    elapsed = time.process_time() - start
    for _, writer in idle:
        writer.close()
    return elapsed


MODES = ("httpx_mock", "httpx", "httpx_stream", "project", "asyncio_raw")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--body-bytes", type=int, default=200)
    parser.add_argument("--modes", default=",".join(MODES), help="which clients, comma-separated")
    args = parser.parse_args(argv)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.body_bytes)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/x"
        body = b"x" * args.body_bytes
        modes = [mode for mode in args.modes.split(",") if mode]
        if unknown := set(modes) - set(MODES):
            parser.error(f"unknown modes {sorted(unknown)}; known: {', '.join(MODES)}")
        figures: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_ in range(1, args.rounds + 1):
            for mode in modes:  # in turn, so that the machine's drift touches each alike
                if mode == "asyncio_raw":
                    cpu = asyncio.run(_raw_round(port, body, args))
                elif mode == "project":
                    cpu = asyncio.run(_project_round(url, body, args))
                else:
                    cpu = asyncio.run(_client_round(url, mode, body, args))
                figures[mode].append(cpu / args.requests * 1e6)
            line = ", ".join(f"{mode} {figures[mode][-1]:.0f}" for mode in modes)
            print(f"round {round_}: CPU µs per request: {line}", flush=True)
        medians = {mode: round(statistics.median(v), 1) for mode, v in figures.items()}
        print(json.dumps({"http_floor_cpu_us_per_request": medians}))
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
