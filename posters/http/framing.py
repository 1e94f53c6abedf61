"""One HTTP/1.1 answer framed from the bytes of a connection, by httptools (llhttp, in C).

Content-Length, chunked, or read to the close; 1xx answers skipped; a head over
`MAX_HEAD_BYTES` refused, and so are chunk lines and trailers over it. Header values are
taken as h11 takes them (any byte but NUL, CR and LF), lines ending in LF alone too.
Errors are httpx's `RemoteProtocolError`.
"""

from __future__ import annotations

import httptools
import httpx

MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one answer


class AnswerParser:
    """httptools' callbacks for one request's answer (1xx answers before it skipped)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        # as tolerant as h11: any header value byte but NUL, CR and LF (llhttp still
        # refuses a CR that does not end a line), and lines that end in LF alone
        self.parser.set_dangerous_leniencies(
            lenient_headers=True, lenient_optional_cr_before_lf=True
        )
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.chunks: list[bytes] = []
        self.status = 0
        self.head_done = False  # the final (non-1xx) head is in
        self.complete = False  # its body too
        self.extra = False  # bytes came after the answer: the connection cannot be trusted
        self.fed = 0  # bytes fed before the head was done
        self.since_body = 0  # bytes fed since the last of the body (chunk lines, trailers)
        self.head_bytes = 0  # of the headers parsed
        self.problem = ""  # why a callback refused the answer
        self.version = "1.1"
        self.keep_alive = False  # the server keeps the connection open after this answer

    def on_message_begin(self) -> None:
        if self.complete:  # more after the answer: stop the parser there
            self.extra = True
            raise ValueError("bytes after the answer")

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:  # a trailer, after a chunked body: not one of the answer's headers
            return
        self.head_bytes += len(name) + len(value) + 4
        if b"\0" in value or name[-1:] in (b" ", b"\t"):  # llhttp, lenient, lets both by
            what = "a NUL byte in" if b"\0" in value else "whitespace before the colon of"
            self.problem = f"{what} header {name[:40]!r}"
            raise ValueError(self.problem)
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_bytes > MAX_HEAD_BYTES:
            self.problem = f"the answer's head is over {MAX_HEAD_BYTES} bytes"
            raise ValueError(self.problem)
        self.status = self.parser.get_status_code()
        if self.status < 100:
            self.problem = f"status {self.status} is not an HTTP status"
            raise ValueError(self.problem)
        self.version = self.parser.get_http_version()
        if self.status >= 200:
            self.head_done = True

    def on_body(self, body: bytes) -> None:
        if not self.head_done:  # llhttp frames a 1xx's body; it has none (RFC 9110 15.2)
            self.problem = f"a body in an informational ({self.status}) answer"
            raise ValueError(self.problem)
        self.since_body = 0
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once done
        else:  # a 1xx answer: the real one follows
            self.headers, self.reason, self.head_bytes = [], b"", 0

    def feed(self, data: bytes) -> None:
        """Parse the next bytes of the connection."""
        if self.head_done:
            self.since_body += len(data)
        else:
            self.fed += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise httpx.RemoteProtocolError("the server switched protocols") from None
        except httptools.HttpParserError as exc:
            if self.complete:  # garbage after a whole answer
                self.extra = True
                return
            raise httpx.RemoteProtocolError(f"malformed answer: {self.problem or exc}") from None
        if not self.head_done and self.fed > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError(f"the answer's head is over {MAX_HEAD_BYTES} bytes")
        # httptools gathers a trailer whole (copied again at each feed): bound what is not body
        if not self.complete and self.since_body > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError(
                f"the answer's chunk lines or trailers are over {MAX_HEAD_BYTES} bytes"
            )

    @property
    def http_version(self) -> str:
        """The answer's protocol as a status line names it: HTTP/1.0, else HTTP/1.1."""
        return "HTTP/1.0" if self.version == "1.0" else "HTTP/1.1"

    def ends_at_close(self) -> bool:
        """Whether the body is framed by the connection's close (no length, not chunked)."""
        if self.status in (204, 304):
            return False
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def keeps_alive(self) -> bool:
        return self.complete and self.keep_alive and not self.extra
