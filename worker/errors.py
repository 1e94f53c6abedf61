"""Why an event fails, and whether trying again can help (`permanent`).

    WorkerError                      internal_error
     ├── InvalidEvent                invalid_event       permanent
     └── PosterError                 (fetching a poster)
          ├── MovieNotFound          movie_not_found     permanent
          ├── PosterNotFound         poster_not_found    permanent
          ├── PosterUnreadable       poster_unreadable   permanent
          ├── PosterTooLarge         poster_too_large    permanent
          ├── HostNotAllowed         host_not_allowed    permanent
          ├── FetchFailed            fetch_failed        permanent (retries used up)
          └── TransientError         fetch_failed        retried with backoff

Permanent errors are dead-lettered at once; transient ones are retried, and become
`FetchFailed` when the retries run out.
"""

from __future__ import annotations

from schemas import ErrorCode


class WorkerError(Exception):
    """Base of the worker's own errors; `code` and `detail` go into the dead letter."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    permanent: bool = True

    def __init__(self, detail: str, attempts: int = 0):
        super().__init__(detail)
        self.detail = detail
        self.attempts = attempts


class InvalidEvent(WorkerError):
    """The input value is not a valid `movies.new` event."""

    code = ErrorCode.INVALID_EVENT


class PosterError(WorkerError):
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
    """A URL points off the allowlist, or uses a scheme other than http(s)."""

    code = ErrorCode.HOST_NOT_ALLOWED


class FetchFailed(PosterError):
    """Transient failures went on until the retries ran out."""

    code = ErrorCode.FETCH_FAILED


class TransientError(PosterError):
    """A timeout, a connection error, 429 or 5xx: worth another try."""

    code = ErrorCode.FETCH_FAILED
    permanent = False

    def __init__(self, detail: str, retry_after: float | None = None, host: str = ""):
        super().__init__(detail)
        self.retry_after = retry_after
        self.host = host  # `host:port` that failed, when known (for the circuit breaker)
