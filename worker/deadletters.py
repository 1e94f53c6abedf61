"""The Kafka headers of a dead letter, so that tools can route and replay it without parsing it.

The names are in `schemas.headers` (they are part of the contract); the input record's
own headers are copied onto the dead letter, so that a replay can give them back.
"""

from __future__ import annotations

from collections.abc import Iterable

from poster_genres.schemas.headers import (
    ATTEMPTS,
    ERROR_CODE,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    PREFIX,
)

Headers = list[tuple[str, bytes]]


def original_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> Headers:
    """A record's headers without the dead-letter ones: what the input record carried."""
    return [(name, value or b"") for name, value in headers or () if not name.startswith(PREFIX)]


def dead_letter_headers(
    headers: Iterable[tuple[str, bytes | None]] | None,
    code: str,
    topic: str,
    partition: int,
    offset: int,
    attempts: int,
) -> Headers:
    """The input record's own headers, then the dead-letter headers (values as UTF-8)."""
    added = {
        ERROR_CODE: code,
        ORIGINAL_TOPIC: topic,
        ORIGINAL_PARTITION: str(partition),
        ORIGINAL_OFFSET: str(offset),
        ATTEMPTS: str(attempts),
    }
    return original_headers(headers) + [(name, value.encode()) for name, value in added.items()]
