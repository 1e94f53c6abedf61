"""The fetcher's HTTP/1.1 transport (`posters.http.transport`) against scripted loopback servers.

What `tests/test_streams.py` checks of both transports (reuse, closed connections,
timeouts, TLS) is not repeated here; these are the transport's own duties: framing every
way a body may come, never trusting a connection whose answer was not read exactly to
its end, sending a GET again once when a kept connection turns out closed, the pool's
limit, and refusing what is malformed.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable

import httpx
import pytest

from posters.http import bodies as body
from posters.http.bodies import discard_body
from posters.http.connections import AddressGuard, CheckedBackend
from posters.streams import AsyncioBackend
from posters.http.transport import MAX_HEAD_BYTES, PosterTransport, direct_head
from posters.http.urls import request_target
from tests.test_streams import loopback, ok

CLOSE = b""  # in a script: close the connection (after what came before)
Script = Callable[[bytes], list[bytes]]  # request line -> the pieces to send, in order


class Scripted:
    """A loopback server that answers each request line as `script` says, piece by piece."""

    def __init__(self, script: Script):
        self.script = script
        self.requests: list[bytes] = []
        self.open = self.peak = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head.split(b"\r\n", 1)[0])
                for piece in self.script(self.requests[-1]):
                    if piece == CLOSE:
                        return
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def __aenter__(self) -> tuple[str, httpx.AsyncClient, CheckedBackend]:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.backend = CheckedBackend(AddressGuard(["127.0.0.1"], loopback), AsyncioBackend())
        limits = getattr(self, "limits", httpx.Limits(max_connections=8))
        self.client = httpx.AsyncClient(transport=PosterTransport(self.backend, limits))
        return f"http://127.0.0.1:{port}", self.client, self.backend

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        self.server.close()


def chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    """`body` as chunked transfer coding, its chunks cut at `cuts`, each chunk a piece."""
    pieces = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    bounds = [0, *sorted(cuts), len(body)]
    for start, end in itertools.pairwise(bounds):
        if end > start:
            pieces.append(b"%x\r\n%s\r\n" % (end - start, body[start:end]))
    return [*pieces, b"0\r\n\r\n"]


def split(data: bytes, rng: random.Random) -> list[bytes]:
    """`data` in pieces of random sizes, so that answers cross the client's reads anywhere."""
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 6))))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


def test_bodies_framed_every_way_arrive_whole_over_one_kept_connection() -> None:
    bodies: dict[bytes, bytes] = {}

    def script(line: bytes) -> list[bytes]:
        rng = random.Random(line)
        body = rng.randbytes(rng.choice([0, 1, 7, 300, 5000, 70_000]))
        bodies[line.split()[1]] = body
        if b"/chunked/" in line:
            answer = b"".join(chunked(body, [rng.randint(0, len(body)) for _ in range(3)]))
        elif b"/informational/" in line:
            answer = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(body)
        else:
            answer = ok(body)
        return split(answer, rng)

    async def main() -> None:
        async with Scripted(script) as (url, client, backend):
            for i in range(150):
                path = f"/{['length', 'chunked', 'informational'][i % 3]}/{i}"
                response = await client.get(url + path)
                assert response.status_code == 200
                assert response.content == bodies[path.encode()], path
            empty = await client.get(url + "/length/none")
            assert empty.content == bodies[b"/length/none"]
            assert backend.opened == 1

    asyncio.run(main())


def test_a_body_that_ends_with_the_connection_is_whole_and_the_connection_is_not_kept() -> None:
    def script(line: bytes) -> list[bytes]:
        if b"/until-close" in line:
            return [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"abc", b"def", CLOSE]
        if b"/no-content" in line:
            return [b"HTTP/1.1 204 No Content\r\n\r\n"]
        return [ok(b"kept")]

    async def main() -> None:
        async with Scripted(script) as (url, client, backend):
            assert (await client.get(url + "/no-content")).content == b""
            assert (await client.get(url + "/a")).content == b"kept"
            assert backend.opened == 1  # a 204 has no body to wait for
            assert (await client.get(url + "/until-close")).content == b"abcdef"
            assert (await client.get(url + "/b")).content == b"kept"
            assert backend.opened == 2

    asyncio.run(main())


def test_a_connection_is_not_reused_unless_its_answer_ended_exactly_where_it_said() -> None:
    def script(line: bytes) -> list[bytes]:
        if b"/unsolicited" in line:  # a second answer nobody asked for follows the first
            return [ok(b"asked") + ok(b"NOT ASKED")]
        if b"/close" in line:
            return [ok(b"last", close=True)]
        if b"/big" in line:
            return [ok(b"x" * 300_000)]
        return [ok(line.split()[1])]

    async def main() -> None:
        async with Scripted(script) as (url, client, backend):
            assert (await client.get(url + "/unsolicited")).content == b"asked"
            assert (await client.get(url + "/next")).content == b"/next"
            assert backend.opened == 2  # the unsolicited answer's connection was dropped
            assert (await client.get(url + "/close")).content == b"last"
            assert (await client.get(url + "/after-close")).content == b"/after-close"
            assert backend.opened == 3
            async with client.stream("GET", url + "/big") as response:
                async for _ in response.aiter_raw():
                    break  # most of the body left unread
            assert (await client.get(url + "/after-big")).content == b"/after-big"
            assert backend.opened == 4

    asyncio.run(main())


def test_a_get_on_a_kept_connection_the_server_closed_is_sent_once_more_on_a_new_one() -> None:
    served: list[int] = []

    def script(line: bytes) -> list[bytes]:
        served.append(1)
        if len(served) == 2:
            return [CLOSE]  # the server had given up on the idle connection: no answer
        return [ok(line.split()[1])]

    async def main() -> None:
        async with Scripted(script) as (url, client, backend):
            assert (await client.get(url + "/1")).content == b"/1"
            assert (await client.get(url + "/2")).content == b"/2"
            assert backend.opened == 2

    async def never_answers() -> None:
        async with Scripted(lambda line: [CLOSE]) as (url, client, backend):
            with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
                await client.get(url + "/fresh")  # a new connection: not sent again
            assert backend.opened == 1

    asyncio.run(main())
    asyncio.run(never_answers())


def test_the_pool_keeps_to_its_limit_and_a_request_waits_its_turn_or_times_out() -> None:
    server = Scripted(lambda line: [ok(line.split()[1])])
    server.limits = httpx.Limits(max_connections=2)  # type: ignore[attr-defined]

    async def main() -> None:
        async with server as (url, client, backend):
            paths = [f"/{i}" for i in range(24)]
            answers = await asyncio.gather(*(client.get(url + p) for p in paths))
            assert [a.content.decode() for a in answers] == paths
            assert server.peak <= 2 and backend.opened <= 2
            async with client.stream("GET", url + "/held-a"), client.stream("GET", url + "/held-b"):
                with pytest.raises(httpx.PoolTimeout):
                    await client.get(url + "/waits", timeout=httpx.Timeout(5.0, pool=0.1))
            assert (await client.get(url + "/after")).content == b"/after"  # both given back

    asyncio.run(main())


@pytest.mark.parametrize(
    "answer,message",
    [
        (b"HTCPCP/1.0 418 TEAPOT\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", "head is over"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 12\r\n\r\n", "malformed"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "malformed",
        ),
        (b"HTTP/1.1 200 OK\r\nX-Bad: a\0b\r\nContent-Length: 0\r\n\r\n", "malformed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "before the end of the body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc", "before the end"),
        # llhttp (lenient) would frame by these: refused, as h11 refused them
        (b"HTTP/1.1 200 OK\r\nContent-Length : 10\r\n\r\nshort", "whitespace before the colon"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding  : chunked\r\n\r\n5\r\nabc", "whitespace before"),
        (b"HTTP/1.1 099 Early\r\nContent-Length: 0\r\n\r\n", "not an HTTP status"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
            "switched protocols",
        ),
    ],
)
def test_malformed_and_oversized_answers_are_protocol_errors(answer: bytes, message: str) -> None:
    async def main() -> None:
        async with Scripted(lambda line: [answer, CLOSE]) as (url, client, _):
            with pytest.raises(httpx.RemoteProtocolError, match=message):
                await client.get(url + "/")

    asyncio.run(main())


def test_lenient_where_h11_was_and_strict_about_what_is_sent() -> None:
    def script(line: bytes) -> list[bytes]:
        if b"/lf" in line:  # lines that end in LF alone
            return [b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"]
        return [b"HTTP/1.1 200 OK\r\nX-Odd: a\x7fb\r\nContent-Length: 0\r\n\r\n"]

    async def main() -> None:
        async with Scripted(script) as (url, client, _):
            assert (await client.get(url + "/lf")).content == b"ok"
            assert (await client.get(url + "/del")).headers["x-odd"] == "a\x7fb"
            before = len(client._transport.network_backend.connects)  # type: ignore[attr-defined]
            with pytest.raises(httpx.LocalProtocolError, match="GET only"):
                await client.post(url + "/post", content=b"x")
            with pytest.raises(httpx.LocalProtocolError, match="cannot be sent"):
                await client.get(url + "/", headers={"X-Split": "a\r\nInjected: yes"})
            with pytest.raises(httpx.UnsupportedProtocol):
                await client.get("ftp://127.0.0.1/")
            assert len(client._transport.network_backend.connects) == before  # type: ignore[attr-defined]

    asyncio.run(main())


def test_a_full_pool_makes_room_after_an_origin_took_its_last_idle_connection() -> None:
    server = Scripted(lambda line: [ok(line.split()[1])])
    server.limits = httpx.Limits(max_connections=2)  # type: ignore[attr-defined]

    async def main() -> None:
        other = await asyncio.start_server(
            Scripted(lambda line: [ok(b"other")]).handle, "127.0.0.1"
        )
        other_url = f"http://127.0.0.1:{other.sockets[0].getsockname()[1]}"
        async with server as (url, client, backend):
            assert (await client.get(url + "/a")).content == b"/a"  # idle: one to `url`
            assert (await client.get(other_url + "/b")).content == b"other"  # and one to `other`
            async with client.stream("GET", url + "/held"):  # takes `url`'s idle one
                # the pool is full (one held, one idle to `other`): that idle one makes room
                third = url.replace("127.0.0.1", "localhost")  # another origin, the same server
                assert (await client.get(third + "/c")).content == b"/c"
            assert backend.opened == 3
        other.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "informational",
    [
        b"HTTP/1.1 150 Odd\r\nContent-Length: 6\r\n\r\nEXTRA!",
        b"HTTP/1.1 199 Odd\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nEXTRA!\r\n0\r\n\r\n",
    ],
)
def test_an_informational_answer_has_no_body_to_pass_off_as_the_final_ones(
    informational: bytes,
) -> None:
    async def main() -> None:
        async with Scripted(lambda line: [informational + ok(b"poster")]) as (url, client, _):
            with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
                await client.get(url + "/")

    asyncio.run(main())


def test_trailers_are_not_headers_and_are_held_to_the_head_limit() -> None:
    def script(line: bytes) -> list[bytes]:
        pieces = chunked(b"poster", [])
        if b"/huge" in line:  # one trailer that never ends, or a chunk extension
            return [pieces[0], b"6\r\nposter\r\n0\r\nX-Trailer: ", *[b"a" * 60_000] * 40]
        if b"/extension" in line:
            return [pieces[0], b"6;", *[b"a" * 60_000] * 40]
        return [b"".join(pieces[:-1]) + b"0\r\nX-Trailer: yes\r\nContent-Type: text/html\r\n\r\n"]

    async def main() -> None:
        async with Scripted(script) as (url, client, _):
            response = await client.get(url + "/trailer")
            assert response.content == b"poster"
            assert "x-trailer" not in response.headers and "content-type" not in response.headers
            for path in ("/huge", "/extension"):
                with pytest.raises(httpx.RemoteProtocolError, match="over"):
                    await client.get(url + path)

    asyncio.run(main())


def test_no_connection_is_kept_when_the_limits_keep_none() -> None:
    server = Scripted(lambda line: [ok(line.split()[1])])
    server.limits = httpx.Limits(max_connections=4, max_keepalive_connections=0)  # type: ignore[attr-defined]

    async def main() -> None:
        async with server as (url, client, backend):
            for path in ("/1", "/2", "/3"):
                assert (await client.get(url + path)).content == path.encode()
            assert backend.opened == 3

    asyncio.run(main())


def test_an_answer_knows_when_its_whole_body_is_in_hand_and_dropping_it_then_needs_no_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    timers: list[float | None] = []  # the timers drain sets (its limit made one of its own)
    real_timeout = asyncio.timeout

    def counted(delay: float | None) -> asyncio.Timeout:
        if delay == 0.75:
            timers.append(delay)
        return real_timeout(delay)

    monkeypatch.setattr(body, "DISCARD_MAX_S", 0.75)
    monkeypatch.setattr(asyncio, "timeout", counted)
    head = b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 5\r\n\r\n"

    async def main() -> None:
        go_on = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head + b"moved")  # the whole answer at once
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head)  # the head, and the body only when the test says
            await writer.drain()
            await go_on.wait()
            writer.write(b"moved")
            await reader.read()  # until the client closes
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        backend = CheckedBackend(AddressGuard(["127.0.0.1"], loopback), AsyncioBackend())
        transport = PosterTransport(backend, httpx.Limits(max_connections=1))
        target = request_target(url)
        whole = await transport.get(target, direct_head(target, b""), {"read": 5.0})
        assert whole.body_received()
        await discard_body(whole)
        await whole.aclose()
        assert timers == []
        late = await transport.get(target, direct_head(target, b""), {"read": 5.0})
        assert not late.body_received()
        asyncio.get_running_loop().call_later(0.05, go_on.set)
        await discard_body(late)  # waits for the rest, under its own limit
        assert late.body_received() and timers == [0.75]
        await late.aclose()
        assert backend.opened == 1  # both bodies read to their end: the connection was kept
        await transport.aclose()
        server.close()

    asyncio.run(main())
