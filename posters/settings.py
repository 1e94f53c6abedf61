"""How posters are fetched: the worker's settings and the trainer's both carry these fields.

Built from the environment in each process's `__main__` and passed down; nothing else in
this package reads the environment.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from poster_genres.posters.loops import EventLoopKind


class FetchSettings(BaseSettings):
    """How posters are fetched; shared by the worker and the trainer."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    tmdb_base_url: str = Field(
        "https://www.themoviedb.org", description="The site whose pages are scraped."
    )
    poster_hosts: Annotated[list[str], NoDecode] = Field(
        ["image.tmdb.org", "media.themoviedb.org"],
        description="Image hosts allowed besides the site: `host` or `host:port`, comma-separated.",
    )
    tmdb_api_key: SecretStr | None = Field(
        None, description="Use the official API instead of scraping."
    )
    tmdb_api_url: str = "https://api.themoviedb.org/3"
    tmdb_image_base_url: str = Field(
        "https://image.tmdb.org/t/p/w500",
        description="Prefix of API `poster_path` values; its host also serves the posters "
        "that a page names by a site-relative `/t/p/` path.",
    )
    poster_rendition: str = Field(
        "w342",
        pattern=r"^(|original|[wh][0-9]+)$",
        description="TMDB image size asked for (`/t/p/<size>/` in the poster URL): w342 covers "
        "a 224-pixel model input; empty keeps the size the page or the API names.",
    )
    tmdb_language: str = Field(
        "en-US", description="`?language=` and `Accept-Language` (not the locale's LANGUAGE)."
    )
    user_agent: str = "Mozilla/5.0 (compatible; movie-poster-genres/0.1; poster genre tagger)"
    fetch_concurrency: int = Field(
        64,
        ge=1,
        le=512,
        description="Requests in flight at once; with FETCH_TARGET_RATE, the most it may grow to.",
    )
    fetch_target_rate: float = Field(
        100.0,
        ge=0,
        description="Posters a second to keep enough requests in flight for: the limit follows "
        "ceil(rate x 2 x observed latency) within [FETCH_CONCURRENCY_MIN, FETCH_CONCURRENCY], "
        "the rate first capped by the rate limits; 0: FETCH_CONCURRENCY, fixed.",
    )
    fetch_concurrency_min: int = Field(
        4, ge=1, le=512, description="The least requests in flight with FETCH_TARGET_RATE."
    )
    fetch_event_loop: EventLoopKind = Field(
        "auto",
        description="The fetch loop: uvloop (auto: when installed, as with the worker extra) "
        "or asyncio's own.",
    )
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0, description="Longest silence while reading.")
    request_timeout_s: float = Field(30.0, gt=0, description="Cap on one request, body included.")
    fetch_attempts: int = Field(
        4, ge=1, le=20, description="Tries per request, the first included."
    )
    backoff_base_s: float = Field(
        0.5, ge=0, description="First retry delay; doubles each try, with jitter."
    )
    backoff_max_s: float = Field(
        30.0, ge=0, description="Cap on one retry delay (Retry-After included)."
    )
    fetch_deadline_s: float = Field(120.0, gt=0, description="Cap on all tries for one poster.")
    breaker_threshold: int = Field(
        5, ge=1, description="Failures in a row that open a host's circuit."
    )
    breaker_cooldown_s: float = Field(
        1.0, gt=0, description="First wait before probing an open circuit."
    )
    breaker_max_cooldown_s: float = Field(15.0, gt=0, description="Cap on the doubling probe wait.")
    max_outage_wait_s: float = Field(
        120.0, ge=0, description="Longest a poster waits for open circuits."
    )
    site_rate_limit: float = Field(
        20.0, ge=0, description="Requests a second to the site (TMDB_BASE_URL); 0: no limit."
    )
    image_rate_limit: float = Field(
        100.0, ge=0, description="Requests a second to each other host (images, API); 0: no limit."
    )
    rate_limit_burst: int = Field(
        5, ge=1, description="Requests a host may get at once after a quiet spell."
    )
    fetch_use_env_proxy: bool = Field(
        False, description="Go through HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, but to NO_PROXY hosts."
    )
    # The standard proxy variables (either case), used only with `fetch_use_env_proxy`.
    https_proxy: SecretStr | None = None  # a proxy URL may carry a password
    http_proxy: SecretStr | None = None
    all_proxy: SecretStr | None = None
    no_proxy: str = ""
    page_genres: bool = Field(
        True,
        description="Read the genres the movie page (or the API) lists, reading a page on past "
        "its head up to them; false: stop at the head and report none.",
    )
    max_redirects: int = Field(5, ge=0, le=20)
    max_page_bytes: int = Field(2 * 1024 * 1024, gt=0)
    max_image_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(
        40_000_000, gt=0, description="Width x height cap (decompression bombs)."
    )

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
