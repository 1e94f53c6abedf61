"""Configuration from the environment (one settings object per process, built in `__main__`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.kafka import KafkaSettings


class FetchSettings(BaseSettings):
    """How posters are fetched; shared by the worker and the trainer."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    tmdb_base_url: str = Field("https://www.themoviedb.org", description="The site whose pages are scraped.")
    poster_hosts: Annotated[list[str], NoDecode] = Field(
        ["image.tmdb.org", "media.themoviedb.org"],
        description="Image hosts allowed besides the site: `host` or `host:port`, comma-separated.",
    )
    tmdb_api_key: SecretStr | None = Field(None, description="Use the official API instead of scraping.")
    tmdb_api_url: str = "https://api.themoviedb.org/3"
    tmdb_image_base_url: str = Field(
        "https://image.tmdb.org/t/p/w500", description="Prefix of API `poster_path` values."
    )
    tmdb_language: str = Field("en-US", description="`?language=` and `Accept-Language` (not the locale's LANGUAGE).")
    user_agent: str = "Mozilla/5.0 (compatible; movie-poster-genres/0.1; poster genre tagger)"
    fetch_concurrency: int = Field(16, ge=1, le=512, description="Posters fetched at once.")
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0, description="Longest silence while reading.")
    request_timeout_s: float = Field(30.0, gt=0, description="Cap on one request, body included.")
    fetch_attempts: int = Field(4, ge=1, le=20, description="Tries per request, the first included.")
    backoff_base_s: float = Field(0.5, ge=0, description="First retry delay; doubles each try, with jitter.")
    backoff_max_s: float = Field(30.0, ge=0, description="Cap on one retry delay (Retry-After included).")
    fetch_deadline_s: float = Field(120.0, gt=0, description="Cap on all tries for one poster.")
    breaker_threshold: int = Field(5, ge=1, description="Failures in a row that open a host's circuit.")
    breaker_cooldown_s: float = Field(1.0, gt=0, description="First wait before probing an open circuit.")
    breaker_max_cooldown_s: float = Field(15.0, gt=0, description="Cap on the doubling probe wait.")
    max_outage_wait_s: float = Field(120.0, ge=0, description="Longest a poster waits for open circuits.")
    max_redirects: int = Field(5, ge=0, le=20)
    max_page_bytes: int = Field(2 * 1024 * 1024, gt=0)
    max_image_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0, description="Width x height cap (decompression bombs).")

    @field_validator("poster_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("poster_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.lower() for host in value]

    @field_validator("tmdb_base_url", "tmdb_api_url", "tmdb_image_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


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
    max_event_bytes: int = Field(64 * 1024, gt=0, description="Larger input values are dead-lettered.")
    max_dead_letter_bytes: int = Field(
        900_000,
        ge=16_384,
        description="Cap on a serialised dead letter; over it, the raw value is dropped.",
    )
    session_timeout_ms: int = Field(10_000, ge=1000)
    heartbeat_interval_ms: int = Field(2_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1000)
    model_poll_s: float = Field(10.0, gt=0, description="How often MODEL_DIR is checked for a new version.")
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535, description="Health and metrics; 0 picks a free port.")
    log_level: str = "INFO"
    log_format: Literal["plain", "json"] = "plain"
