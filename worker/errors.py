"""Why an event fails: the worker dead-letters every `WorkerError` under its `code`.

    WorkerError                      internal_error      an unexpected exception, summarised
     ├── InvalidEvent                invalid_event
     └── PosterError                 fetching the poster: the tree in posters/errors.py

`WorkerError` is `posters.errors.CodedError` (code, detail, attempts): poster errors must be
`WorkerError`s to reach the dead-letter topic with their own code, and the `posters`
package, which the trainer uses too, does not import the worker. Nothing here is retried:
the fetcher retries transient failures itself before it raises.
"""

from __future__ import annotations

from poster_genres.posters.errors import CodedError
from poster_genres.schemas import ErrorCode

WorkerError = CodedError


class InvalidEvent(WorkerError):
    """The input value is not a valid `movies.new` event."""

    code = ErrorCode.INVALID_EVENT
