"""The `backfill` command: a `movies.new` event for every MovieLens movie without genres."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from poster_genres.schemas.events import NewMovie
from poster_genres.trainer.movielens import Movies

if TYPE_CHECKING:
    from poster_genres.common.kafka import KafkaSettings

log = logging.getLogger(__name__)

# event ids are derived from the TMDB id, so a repeated backfill repeats them (consumers dedupe)
EVENT_NAMESPACE = uuid.UUID("6c1f2a7e-58b4-4d6e-9a36-3f0e8c1d2b47")


def backfill_events(movies: Movies, occurred_at: datetime | None = None) -> list[NewMovie]:
    """One validated `movies.new` event per unlabelled movie that has a TMDB id."""
    when = occurred_at or datetime.now(UTC)
    events = []
    for row in movies.unlabelled.itertuples(index=False):
        tmdb_id = int(row.tmdbId)
        events.append(
            NewMovie(
                tmdb_id=tmdb_id,
                event_id=str(uuid.uuid5(EVENT_NAMESPACE, f"movielens-backfill:{tmdb_id}")),
                title=str(row.title),
                occurred_at=when,
            )
        )
    return events


def event_json(event: NewMovie) -> str:
    """The event as it goes on the topic (no nulls)."""
    return event.model_dump_json(exclude_none=True)


def write_events(events: Iterable[NewMovie], out: TextIO) -> int:
    """Print events as JSON lines (the dry run); returns how many."""
    n = 0
    for event in events:
        out.write(event_json(event) + "\n")
        n += 1
    return n


def publish_events(
    events: list[NewMovie],
    kafka: KafkaSettings,
    topic: str = "movies.new",
    timeout_s: float = 60.0,
) -> int:
    """Produce the events keyed by TMDB id with the shared idempotent, acks=all producer.

    TLS and SASL come with `kafka`; waits for every acknowledgement.
    """
    from poster_genres.common.kafka import build_producer

    producer = build_producer(
        kafka,
        "genre-trainer-backfill",
        linger_ms=20,
        key_serializer=lambda k: k.encode("utf-8"),
        value_serializer=lambda v: v.encode("utf-8"),
    )
    try:
        futures = [producer.send(topic, key=str(e.tmdb_id), value=event_json(e)) for e in events]
        producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)  # raises the delivery error, if any
    finally:
        producer.close(timeout=timeout_s)
    log.info("published %d movies.new event(s) to %s", len(events), topic)
    return len(events)
