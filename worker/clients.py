"""The worker's Kafka consumer, configured for at-least-once processing.

It reads only committed records (`read_committed`): a producer that writes
`movies.new` in transactions may abort some, and an aborted event must not be tagged.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer

from poster_genres.common.kafka import security_config
from poster_genres.worker.settings import WorkerSettings


def build_consumer(settings: WorkerSettings) -> KafkaConsumer:
    """Manual commits, batches of `batch_size`, from the earliest offset for a new group."""
    return KafkaConsumer(**consumer_config(settings))


def consumer_config(settings: WorkerSettings) -> dict[str, Any]:
    """The options of the worker's consumer."""
    return dict(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.group_id,
        client_id=settings.client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.batch_size,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        isolation_level="read_committed",
        **security_config(settings),
    )
