"""Why fetching a poster fails, and the dead-letter code of each failure.

    CodedError                       internal_error      code, detail, attempts
     └── PosterError                 fetch_failed        other HTTP errors, a bad API answer
          ├── MovieNotFound          movie_not_found
          ├── PosterNotFound         poster_not_found
          ├── PosterUnreadable       poster_unreadable
          ├── PosterTooLarge         poster_too_large
          ├── HostNotAllowed         host_not_allowed
          ├── InvalidURL             invalid_url         a redirect or the API leads to a bad URL
          ├── FetchFailed            fetch_failed        the tries ran out
          └── TransientError         fetch_failed        retried with backoff

Whether to try again is decided by type alone: a `TransientError` is retried, and becomes
`FetchFailed` when the tries or the time run out; every other error is final.

`CodedError` is the base that the worker dead-letters (it is `worker.errors.WorkerError`),
so that a poster error reaches the dead-letter topic with its own code and an unexpected
exception as `internal_error`. It lives here because this package must not import the worker.
"""

from __future__ import annotations

from poster_genres.schemas import ErrorCode


class CodedError(Exception):
    """A failure with a stable `code`; `code`, `detail` and `attempts` go into a dead letter."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, detail: str, attempts: int = 0):
        super().__init__(detail)
        self.detail = detail
        self.attempts = attempts


class PosterError(CodedError):
    """Fetching the poster of a movie failed."""

    code = ErrorCode.FETCH_FAILED


class MovieNotFound(PosterError):
    """The site has no page for this TMDB id."""

    code = ErrorCode.MOVIE_NOT_FOUND


class PosterNotFound(PosterError):
    """The movie page has no poster."""

    code = ErrorCode.POSTER_NOT_FOUND


class PosterUnreadable(PosterError):
    """The poster is not an image that decodes."""

    code = ErrorCode.POSTER_UNREADABLE


class PosterTooLarge(PosterError):
    """The poster exceeds the byte or pixel cap."""

    code = ErrorCode.POSTER_TOO_LARGE


class HostNotAllowed(PosterError):
    """A URL points off the allowlist, uses a scheme other than http(s), or a private address."""

    code = ErrorCode.HOST_NOT_ALLOWED


class InvalidURL(PosterError):
    """A URL to request (a redirect's `Location`, an API path) cannot be a URL at all."""

    code = ErrorCode.INVALID_URL


class FetchFailed(PosterError):
    """Transient failures went on until the tries or the time ran out."""

    code = ErrorCode.FETCH_FAILED


class TransientError(PosterError):
    """A timeout, a connection error, 429 or 5xx: worth another try."""

    code = ErrorCode.FETCH_FAILED

    def __init__(self, detail: str, retry_after: float | None = None, host: str = ""):
        super().__init__(detail)
        self.retry_after = retry_after
        self.host = host  # `host:port` that failed, when known (for the circuit breaker)
