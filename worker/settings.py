"""Configuration from the environment (one settings object per process, built in `__main__`).

The poster-fetching fields come from `posters.settings.FetchSettings`, which the trainer
shares; the rest is the worker's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from poster_genres.common.kafka import KafkaSettings
from poster_genres.posters.settings import FetchSettings


def _blank_is_none(value: object) -> object:
    """`MODEL_VERSION=` (set but empty) means no pin."""
    return None if isinstance(value, str) and not value.strip() else value


class WorkerSettings(FetchSettings, KafkaSettings):
    """Everything `genre-worker` reads from the environment."""

    input_topic: str = "movies.new"
    output_topic: str = "movies.genres"
    dlq_topic: str = "movies.new.dlq"
    group_id: str = "genre-worker"
    client_id: str = "genre-worker"
    model_dir: Path = Path("models")
    batch_size: int = Field(32, ge=1, le=4096, description="Records per batch (max_poll_records).")
    batch_linger_ms: int = Field(25, ge=0, description="How long to wait to fill a batch.")
    max_event_bytes: int = Field(
        64 * 1024, gt=0, description="Larger input values are dead-lettered."
    )
    max_dead_letter_bytes: int = Field(
        900_000,
        ge=16_384,
        description="Cap on a serialised dead letter; over it, the raw value is dropped.",
    )
    fetch_ahead: int = Field(
        2,
        ge=1,
        le=16,
        description="Batches whose posters may download while the oldest one's are awaited: "
        "1 fetches only the next batch during a classification; more keep classifying fed "
        "over long round trips.",
    )
    fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        le=10_000,
        description="How long the broker may hold a fetch that found no records (the "
        "consumer's fetch_max_wait_ms; kafka-python's default is 500).",
    )
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(2_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    model_poll_s: float = Field(
        10.0, gt=0, description="How often MODEL_DIR is checked for the version to serve."
    )
    model_version: Annotated[int | None, BeforeValidator(_blank_is_none)] = Field(
        None,
        ge=1,
        description="Serve this version and no other (a pin); unset: the one serving.json "
        "names, else the highest.",
    )
    standby_stall_s: float = Field(
        300.0,
        ge=0,
        description="A member with no partitions that sees the group's input wait with no "
        "commit for this long leaves and rejoins the group, and reports not ready; 0: never.",
    )
    http_host: str = "0.0.0.0"
    http_port: int = Field(
        8080,
        ge=0,
        le=65535,
        description="Health and metrics; 0 picks a free port (logged). One per process on a host.",
    )
    log_level: str = "INFO"
    log_format: Literal["plain", "json"] = "plain"
