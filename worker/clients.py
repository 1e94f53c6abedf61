"""Kafka consumer and producer, configured for at-least-once processing."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


def security_config(settings: WorkerSettings) -> dict[str, Any]:
    """TLS and SASL options shared by the consumer and the producer."""
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


def build_consumer(settings: WorkerSettings) -> KafkaConsumer:
    """Manual commits, batches of `batch_size`, from the earliest offset for a new group."""
    return KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        group_id=settings.group_id,
        client_id=settings.client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.batch_size,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        **security_config(settings),
    )


def build_producer(settings: WorkerSettings) -> KafkaProducer:
    """Idempotent, `acks=all`, room for dead letters that carry a large original value."""
    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        client_id=settings.client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_block_ms=10_000,  # a send waits this long at most for metadata when the broker is away
        max_request_size=2 * 1024 * 1024,
        **security_config(settings),
    )


def connect(factory: Callable[[], Any], what: str, should_stop: Callable[[], bool], max_wait_s: float = 30.0) -> Any:
    """Build a client, waiting with backoff while no broker answers; None if stopped first."""
    delay = 1.0
    while not should_stop():
        try:
            return factory()
        except KafkaError as exc:
            log.warning("no Kafka broker answers for the %s (%s); trying again in %.0f s", what, exc, delay)
            end = time.monotonic() + delay
            while time.monotonic() < end and not should_stop():
                time.sleep(0.2)
            delay = min(delay * 2, max_wait_s)
    return None
