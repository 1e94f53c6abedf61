"""Pydantic models of `movies.new`, `movies.genres` and `movies.new.dlq`."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
)

SCHEMA_VERSION = 1
MAX_TMDB_ID = 2**31 - 1


class ErrorCode(StrEnum):
    """Why an event ended in the dead-letter topic; stable, for dashboards and alerts."""

    INVALID_EVENT = "invalid_event"
    MOVIE_NOT_FOUND = "movie_not_found"
    POSTER_NOT_FOUND = "poster_not_found"
    POSTER_UNREADABLE = "poster_unreadable"
    POSTER_TOO_LARGE = "poster_too_large"
    HOST_NOT_ALLOWED = "host_not_allowed"
    INVALID_URL = "invalid_url"
    FETCH_FAILED = "fetch_failed"
    INVALID_SCORES = "invalid_scores"
    INTERNAL_ERROR = "internal_error"


class NewMovie(BaseModel):
    """A `movies.new` event: a movie whose genres are not known yet."""

    model_config = ConfigDict(extra="ignore", str_max_length=2000)

    tmdb_id: StrictInt = Field(
        gt=0, le=MAX_TMDB_ID, description="The movie's id on themoviedb.org.", examples=[603]
    )
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The producer's id of this event; the worker makes one if absent.",
        examples=["0b6f7a3e-4c1d-4e0a-9f57-1d2c3b4a5e6f"],
    )
    title: str | None = Field(
        default=None, description="The movie's title, passed through.", examples=["The Matrix"]
    )
    occurred_at: AwareDatetime | None = Field(
        default=None,
        description="When the producer learnt of the movie (RFC 3339).",
        examples=["2026-11-28T09:30:00Z"],
    )
    schema_version: StrictInt = Field(
        default=SCHEMA_VERSION, ge=1, description="Version of this event's schema.", examples=[1]
    )


class MovieGenres(BaseModel):
    """A `movies.genres` event: the genres the model sees in a movie's poster."""

    # Consumers parse with these models too: a field added later must not break them.
    model_config = ConfigDict(extra="ignore")

    schema_version: int = Field(
        default=SCHEMA_VERSION, description="Version of this event's schema."
    )
    event_id: str = Field(description="This event's own id.", examples=["9d1c5e0e-..."])
    source_event_id: str = Field(
        description="The `event_id` of the `movies.new` event; deduplicate on it.",
        examples=["0b6f7a3e-4c1d-4e0a-9f57-1d2c3b4a5e6f"],
    )
    tmdb_id: int = Field(description="The movie's id on themoviedb.org.", examples=[603])
    title: str | None = Field(default=None, description="The title from the input, passed through.")
    genres: list[str] = Field(
        description="Labels whose score reached their threshold, highest score first.",
        examples=[["Action", "Sci-Fi"]],
    )
    scores: dict[str, float] = Field(
        description="Every label of the model and its probability.",
        examples=[{"Action": 0.91, "Comedy": 0.04, "Sci-Fi": 0.77}],
    )
    model_version: int = Field(
        description="The model version that scored the poster.", examples=[3]
    )
    poster_url: str = Field(
        description="The image that was classified.",
        examples=["https://image.tmdb.org/t/p/w500/f89U3ADr1oiB1s9GkdPOEpXUk5H.jpg"],
    )
    classified_at: datetime = Field(description="When the worker scored the poster (UTC).")
    page_genres: list[str] | None = Field(
        default=None,
        description="The genres the movie's TMDB page (or the API) lists, as MovieLens genre "
        "names (Science Fiction as Sci-Fi, Family as Children, Music as Musical; History, TV "
        "Movie and unknown ones left out), in the page's order, whether or not the model has "
        "them as labels. Absent when the page lists none of these (or PAGE_GENRES=false). "
        "Added within schema_version 1.",
        examples=[["Action", "Sci-Fi"]],
    )


def is_utf8(raw: bytes) -> bool:
    """Whether `raw` decodes as UTF-8."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class OriginalRecord(BaseModel):
    """Where a dead letter came from, with the raw value kept intact."""

    topic: str = Field(description="The input topic.", examples=["movies.new"])
    partition: int = Field(description="The input record's partition.")
    offset: int = Field(description="The input record's offset.")
    timestamp_ms: int | None = Field(default=None, description="The input record's timestamp.")
    key: str | None = Field(description="The record key (text, or base64 when not UTF-8).")
    value: str | None = Field(
        description="The raw value: text if it decodes as UTF-8, else base64."
    )
    value_encoding: Literal["utf-8", "base64"] = Field(
        description="How `value` (and `key`) hold the original bytes."
    )
    value_bytes: int = Field(default=0, description="Length of the original value in bytes.")
    value_truncated: bool = Field(
        default=False,
        description="True when the value was too large to keep whole; `value` holds its start "
        "and the record stays at topic/partition/offset in the input topic.",
    )
    value_dropped: bool = Field(
        default=False,
        description="True when the dead letter could not carry the value at all (it would not "
        "fit MAX_DEAD_LETTER_BYTES, or the broker refused it); `value` is null and the record "
        "stays at topic/partition/offset in the input topic.",
    )
    key_bytes: int | None = Field(
        default=None, description="Length of the original key in bytes (null: no key)."
    )
    key_truncated: bool = Field(
        default=False,
        description="True when the key was longer than 1 KiB; `key` holds its first KiB.",
    )

    @classmethod
    def from_raw(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None = None,
        keep_bytes: int = 256 * 1024,
    ) -> OriginalRecord:
        """Keep the first `keep_bytes` as text when they are UTF-8, as base64 otherwise."""
        size = 0 if value is None else len(value)
        truncated = size > keep_bytes
        if truncated and value is not None:
            value = value[:keep_bytes]

        as_text = all(raw is None or is_utf8(raw) for raw in (key, value))

        def encode(raw: bytes | None) -> str | None:
            """The bytes as text or base64, as decided for the whole record."""
            if raw is None:
                return None
            return raw.decode("utf-8") if as_text else base64.b64encode(raw).decode("ascii")

        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            key=encode(key),
            value=encode(value),
            value_encoding="utf-8" if as_text else "base64",
            value_bytes=size,
            value_truncated=truncated,
        )

    def raw_key(self) -> bytes | None:
        """The original key's bytes, for replaying a dead letter."""
        if self.key is None:
            return None
        if self.value_encoding == "base64":
            return base64.b64decode(self.key)
        return self.key.encode("utf-8")

    def raw_value(self) -> bytes | None:
        """The original value's bytes, for replaying a dead letter."""
        if self.value is None:
            return None
        if self.value_encoding == "base64":
            return base64.b64decode(self.value)
        return self.value.encode("utf-8")


class DeadLetter(BaseModel):
    """A `movies.new.dlq` event: an input that failed for good, and why."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = Field(
        default=SCHEMA_VERSION, description="Version of this event's schema."
    )
    # An open list: a code added in a later release must not break readers of this version.
    error: ErrorCode | str = Field(
        union_mode="left_to_right",  # a known code parses as an ErrorCode
        description="A short stable code: one of ErrorCode's, or one added later (treat it as an "
        "unexpected failure).",
        examples=["movie_not_found"],
    )
    detail: str = Field(
        description="What went wrong, for a human.",
        examples=["GET https://www.themoviedb.org/movie/99999999 answered 404"],
    )
    attempts: int = Field(ge=0, description="How many times the poster was requested.")
    failed_at: datetime = Field(description="When the worker gave up (UTC).")
    tmdb_id: int | None = Field(default=None, description="The movie's id, when the event had one.")
    source_event_id: str | None = Field(default=None, description="The input's event id, if any.")
    original: OriginalRecord = Field(description="The input record, to inspect or replay.")


class EventDecodeError(ValueError):
    """A `movies.new` value that is not a valid event."""


def _reject_constant(name: str) -> Any:
    raise EventDecodeError(f"JSON constant {name} is not allowed")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise EventDecodeError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def decode_new_movie(raw: bytes | None, max_bytes: int = 65536) -> NewMovie:
    """Parse a `movies.new` value strictly: UTF-8 JSON object, no NaN, no duplicate keys."""
    if raw is None:
        raise EventDecodeError("the record has no value (a tombstone)")
    if len(raw) > max_bytes:
        raise EventDecodeError(f"the value is {len(raw)} bytes, over the limit of {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"{exc.reason} at byte {exc.start}"
        raise EventDecodeError(f"the value is not UTF-8: {detail}") from None
    try:
        data = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys
        )
    except EventDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise EventDecodeError(f"the value is not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise EventDecodeError(f"the value is JSON {type(data).__name__}, not an object")
    try:
        return NewMovie.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors(include_url=False)[:5]
        )
        raise EventDecodeError(f"the event does not match the schema: {problems}") from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each topic's events, keyed by the default topic name."""
    return {
        "movies.new": NewMovie.model_json_schema(),
        "movies.genres": MovieGenres.model_json_schema(),
        "movies.new.dlq": DeadLetter.model_json_schema(),
    }
