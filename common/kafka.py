"""Kafka connection settings and the producer that every command publishes with.

The worker and the trainer's `backfill` both produce; both take the brokers and the
TLS/SASL options from the same environment variables and get the same idempotent,
`acks=all` producer, so a cluster that needs credentials works for either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from kafka import KafkaProducer
from kafka.errors import KafkaError
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)


class KafkaSettings(BaseSettings):
    """Where the brokers are and how to authenticate (environment variables)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    @property
    def bootstrap_servers(self) -> list[str]:
        """The comma-separated list as kafka-python takes it."""
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]


def security_config(settings: KafkaSettings) -> dict[str, Any]:
    """TLS and SASL options shared by every consumer and producer."""
    config: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism:
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            config["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    for option in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(settings, f"kafka_{option}")
        if value is not None:
            config[option] = str(value)
    return config


def build_producer(settings: KafkaSettings, client_id: str, **overrides: Any) -> KafkaProducer:
    """Idempotent, `acks=all`, room for dead letters that carry a large original value."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        # a send waits this long at most for metadata when the broker is away
        "max_block_ms": 10_000,
        "max_request_size": 2 * 1024 * 1024,
        **security_config(settings),
    }
    config.update(overrides)
    return KafkaProducer(**config)


def connect(
    factory: Callable[[], Any], what: str, should_stop: Callable[[], bool], max_wait_s: float = 30.0
) -> Any:
    """Build a client, waiting with backoff while no broker answers; None if stopped first."""
    delay = 1.0
    while not should_stop():
        try:
            return factory()
        except KafkaError as exc:
            log.warning(
                "no Kafka broker answers for the %s (%s); trying again in %.0f s", what, exc, delay
            )
            end = time.monotonic() + delay
            while time.monotonic() < end and not should_stop():
                time.sleep(0.2)
            delay = min(delay * 2, max_wait_s)
    return None
