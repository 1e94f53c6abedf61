"""The fetcher's HTTP/1.1 transport (`DirectTransport`) against scripted loopback servers.

What `tests/posters/test_connections.py` checks of both transports (reuse, closed connections,
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

from poster_genres.posters.http import bodies
from poster_genres.posters.http.bodies import discard_body
from poster_genres.posters.http.connections import Connector
from poster_genres.posters.http.framing import MAX_HEAD_BYTES
from poster_genres.posters.http.response import Response
from poster_genres.posters.http.transport import DirectTransport, header_lines
from poster_genres.posters.http.urls import InvalidTarget, parse_target
from tests.fixtures import connector, get, ok, timeouts

CLOSE = b""  # in a script: close the connection (after what came before)
Script = Callable[[bytes], list[bytes]]  # request line -> the pieces to send, in order


class Scripted:
    """A loopback server that answers each request line as `script` says, piece by piece."""

    def __init__(self, script: Script, max_connections: int = 8, pool: float = 10.0):
        self.script = script
        self.heads: list[bytes] = []  # each request's head, whole
        self.open = self.peak = 0
        self.max_connections = max_connections
        self.pool = pool

    @property
    def requests(self) -> list[bytes]:
        return [head.split(b"\r\n", 1)[0] for head in self.heads]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            while True:
                self.heads.append(await reader.readuntil(b"\r\n\r\n"))
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

    async def __aenter__(self) -> tuple[str, DirectTransport, Connector]:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.connector = connector()
        wait = timeouts(pool=self.pool)
        self.transport = DirectTransport(self.connector, wait, self.max_connections)
        return f"http://127.0.0.1:{port}", self.transport, self.connector

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.aclose()
        self.server.close()


async def send(transport: DirectTransport, url: str) -> Response:
    """A GET of `url` whose body is left to read (and the response to close)."""
    return await transport.send(parse_target(url), {})


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
    bodies_sent: dict[bytes, bytes] = {}

    def script(line: bytes) -> list[bytes]:
        rng = random.Random(line)
        body = rng.randbytes(rng.choice([0, 1, 7, 300, 5000, 70_000]))
        bodies_sent[line.split()[1]] = body
        if b"/chunked/" in line:
            answer = b"".join(chunked(body, [rng.randint(0, len(body)) for _ in range(3)]))
        elif b"/informational/" in line:
            answer = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(body)
        else:
            answer = ok(body)
        return split(answer, rng)

    async def main() -> None:
        async with Scripted(script) as (url, transport, opened):
            for i in range(150):
                path = f"/{['length', 'chunked', 'informational'][i % 3]}/{i}"
                response = await send(transport, url + path)
                assert response.status == 200
                body = b"".join([chunk async for chunk in response.raw_chunks()])
                await response.aclose()
                assert body == bodies_sent[path.encode()], path
            empty = await get(transport, url + "/length/none")
            assert empty == bodies_sent[b"/length/none"]
            assert opened.opened == 1

    asyncio.run(main())


def test_a_body_that_ends_with_the_connection_is_whole_and_the_connection_is_not_kept() -> None:
    def script(line: bytes) -> list[bytes]:
        if b"/until-close" in line:
            return [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", b"abc", b"def", CLOSE]
        if b"/no-content" in line:
            return [b"HTTP/1.1 204 No Content\r\n\r\n"]
        return [ok(b"kept")]

    async def main() -> None:
        async with Scripted(script) as (url, transport, opened):
            assert await get(transport, url + "/no-content") == b""
            assert await get(transport, url + "/a") == b"kept"
            assert opened.opened == 1  # a 204 has no body to wait for
            assert await get(transport, url + "/until-close") == b"abcdef"
            assert await get(transport, url + "/b") == b"kept"
            assert opened.opened == 2

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
        async with Scripted(script) as (url, transport, opened):
            assert await get(transport, url + "/unsolicited") == b"asked"
            assert await get(transport, url + "/next") == b"/next"
            assert opened.opened == 2  # the unsolicited answer's connection was dropped
            assert await get(transport, url + "/close") == b"last"
            assert await get(transport, url + "/after-close") == b"/after-close"
            assert opened.opened == 3
            response = await send(transport, url + "/big")
            async for _ in response.raw_chunks():
                break  # most of the body left unread
            await response.aclose()
            assert await get(transport, url + "/after-big") == b"/after-big"
            assert opened.opened == 4

    asyncio.run(main())


def test_a_get_on_a_kept_connection_the_server_closed_is_sent_once_more_on_a_new_one() -> None:
    served: list[int] = []

    def script(line: bytes) -> list[bytes]:
        served.append(1)
        if len(served) == 2:
            return [CLOSE]  # the server had given up on the idle connection: no answer
        return [ok(line.split()[1])]

    async def main() -> None:
        async with Scripted(script) as (url, transport, opened):
            assert await get(transport, url + "/1") == b"/1"
            assert await get(transport, url + "/2") == b"/2"
            assert opened.opened == 2 and len(served) == 3

    async def never_answers() -> None:
        async with Scripted(lambda line: [CLOSE]) as (url, transport, opened):
            with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
                await get(transport, url + "/fresh")  # a new connection: not sent again
            assert opened.opened == 1

    asyncio.run(main())
    asyncio.run(never_answers())


def test_the_pool_keeps_to_its_limit_and_a_request_waits_its_turn_or_times_out() -> None:
    async def main() -> None:
        async with Scripted(lambda line: [ok(line.split()[1])], max_connections=2) as served:
            url, transport, opened = served
            paths = [f"/{i}" for i in range(24)]
            answers = await asyncio.gather(*(get(transport, url + p) for p in paths))
            assert [a.decode() for a in answers] == paths
            assert opened.opened <= 2
        server = Scripted(lambda line: [ok(line.split()[1])], max_connections=2, pool=0.5)
        async with server as (url, transport, opened):
            held = [await send(transport, url + p) for p in ("/held-a", "/held-b")]
            with pytest.raises(httpx.PoolTimeout):
                await get(transport, url + "/waits")
            waiting = asyncio.ensure_future(get(transport, url + "/waits-its-turn"))
            await asyncio.sleep(0.02)
            assert not waiting.done()
            await held[0].aclose()  # its (small) answer is all in: the connection is given back
            assert await waiting == b"/waits-its-turn"
            await held[1].aclose()
            assert await get(transport, url + "/after") == b"/after"
            assert server.peak <= 2 and opened.opened == 2

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
        async with Scripted(lambda line: [answer, CLOSE]) as (url, transport, _):
            with pytest.raises(httpx.RemoteProtocolError, match=message):
                await get(transport, url + "/")

    asyncio.run(main())


def test_lenient_where_h11_was_and_strict_about_what_is_sent() -> None:
    def script(line: bytes) -> list[bytes]:
        if b"/lf" in line:  # lines that end in LF alone
            return [b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"]
        return [b"HTTP/1.1 200 OK\r\nX-Odd: a\x7fb\r\nContent-Length: 0\r\n\r\n"]

    async def main() -> None:
        server = Scripted(script)
        async with server as (url, transport, opened):
            assert await get(transport, url + "/lf") == b"ok"
            response = await send(transport, url + "/del")
            assert response.headers["x-odd"] == "a\x7fb"
            await response.aclose()
            target = parse_target(url + "/")
            for headers in ({"X-Split": "a\r\nInjected: yes"}, {"X Name": "a"}, {"X-Nul": "\0"}):
                with pytest.raises(httpx.LocalProtocolError, match="cannot be sent"):
                    await transport.send(target, headers)
            with pytest.raises(InvalidTarget):
                parse_target("ftp://127.0.0.1/")
            assert await get(transport, url + "/lf") == b"ok"
            assert len(server.heads) == 3 and opened.opened == 1  # nothing sent of the refused

    asyncio.run(main())


def test_the_request_is_a_plain_get_with_the_host_and_the_headers_given() -> None:
    async def main() -> None:
        server = Scripted(lambda line: [ok(b"")])
        async with server as (url, transport, _):
            headers = {"Accept": "image/*", "User-Agent": "posters/1"}
            await transport.send(parse_target(url + '/a/é?q="x"&l=en#frag'), headers)
            port = url.rsplit(":", 1)[1]
            assert server.heads == [
                b"GET /a/%C3%A9?q=%22x%22&l=en HTTP/1.1\r\nHost: 127.0.0.1:"
                + port.encode()
                + b"\r\nAccept: image/*\r\nUser-Agent: posters/1\r\n\r\n"
            ]
        assert header_lines({"A": "1", "b-c": "x y"}) == b"A: 1\r\nb-c: x y\r\n"

    asyncio.run(main())


def test_a_full_pool_makes_room_after_an_origin_took_its_last_idle_connection() -> None:
    async def main() -> None:
        other = await asyncio.start_server(
            Scripted(lambda line: [ok(b"other")]).handle, "127.0.0.1"
        )
        other_url = f"http://127.0.0.1:{other.sockets[0].getsockname()[1]}"
        server = Scripted(lambda line: [ok(line.split()[1])], max_connections=2)
        async with server as (url, transport, opened):
            assert await get(transport, url + "/a") == b"/a"  # idle: one to `url`
            assert await get(transport, other_url + "/b") == b"other"  # and one to `other`
            held = await send(transport, url + "/held")  # takes `url`'s idle one
            # the pool is full (one held, one idle to `other`): that idle one makes room
            third = url.replace("127.0.0.1", "localhost")  # another origin, the same server
            assert await get(transport, third + "/c") == b"/c"
            await held.aclose()
            assert opened.opened == 3
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
        async with Scripted(lambda line: [informational + ok(b"poster")]) as (url, transport, _):
            with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
                await get(transport, url + "/")

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
        async with Scripted(script) as (url, transport, opened):
            response = await send(transport, url + "/trailer")
            assert b"".join([chunk async for chunk in response.raw_chunks()]) == b"poster"
            assert "x-trailer" not in response.headers and "content-type" not in response.headers
            await response.aclose()
            assert await get(transport, url + "/after-trailer") == b"poster"
            assert opened.opened == 1  # a chunked body with trailers ends where it says
            for path in ("/huge", "/extension"):
                with pytest.raises(httpx.RemoteProtocolError, match="over"):
                    await get(transport, url + path)

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

    monkeypatch.setattr(bodies, "DISCARD_MAX_S", 0.75)
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
        opened = connector()
        transport = DirectTransport(opened, timeouts(), 1)
        whole = await send(transport, url)
        assert whole.body_received()
        await discard_body(whole)
        await whole.aclose()
        assert timers == []
        late = await send(transport, url)
        assert not late.body_received()
        asyncio.get_running_loop().call_later(0.05, go_on.set)
        await discard_body(late)  # waits for the rest, under its own limit
        assert late.body_received() and timers == [0.75]
        await late.aclose()
        assert opened.opened == 1  # both bodies read to their end: the connection was kept
        await transport.aclose()
        server.close()

    asyncio.run(main())
