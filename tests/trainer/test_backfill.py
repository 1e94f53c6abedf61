"""`backfill`: a valid `movies.new` event per unlabelled movie, produced idempotently."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest

from demo.synthetic import SyntheticDataset
from poster_genres.common.kafka import KafkaSettings
from poster_genres.schemas.events import NewMovie, decode_new_movie
from poster_genres.trainer.backfill import backfill_events, publish_events
from poster_genres.trainer.movielens import read_movielens


def test_events_cover_exactly_the_unlabelled_movies(synthetic: SyntheticDataset) -> None:
    events = backfill_events(read_movielens(synthetic.root))
    assert sorted(e.tmdb_id for e in events) == sorted(synthetic.unlabelled)
    assert all(e.title and e.event_id and e.occurred_at for e in events)
    again = backfill_events(read_movielens(synthetic.root))
    assert [e.event_id for e in again] == [
        e.event_id for e in events
    ]  # stable ids: consumers dedupe


def test_dry_run_prints_valid_json_lines(synthetic: SyntheticDataset) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "poster_genres.trainer",
            "backfill",
            "--movielens",
            str(synthetic.root),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(synthetic.unlabelled)
    events = [decode_new_movie(line.encode()) for line in lines]  # the worker's strict parser
    assert {e.tmdb_id for e in events} == set(synthetic.unlabelled)


class FakeProducer:
    """Records what a KafkaProducer would be asked to do."""

    instances: ClassVar[list[FakeProducer]] = []

    def __init__(self, **config: Any):
        self.config = config
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = self.closed = False
        FakeProducer.instances.append(self)

    def send(self, topic: str, key: str, value: str) -> Any:
        self.sent.append(
            (topic, self.config["key_serializer"](key), self.config["value_serializer"](value))
        )

        class Done:
            def get(self, timeout: float) -> None:
                return None

        return Done()

    def flush(self, timeout: float) -> None:
        self.flushed = True

    def close(self, timeout: float) -> None:
        self.closed = True


def test_publish_uses_an_idempotent_acks_all_producer(
    synthetic: SyntheticDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "poster_genres.common.kafka.KafkaProducer", FakeProducer
    )  # what build_producer makes
    events = backfill_events(read_movielens(synthetic.root))
    n = publish_events(
        events, KafkaSettings(kafka_bootstrap_servers="h1:9092,h2:9092"), "movies.new.test"
    )
    producer = FakeProducer.instances[-1]
    assert n == len(events) and producer.flushed and producer.closed
    assert producer.config["acks"] == "all" and producer.config["enable_idempotence"] is True
    assert producer.config["bootstrap_servers"] == ["h1:9092", "h2:9092"]
    for (topic, key, value), event in zip(producer.sent, events, strict=True):
        assert topic == "movies.new.test"
        assert key == str(event.tmdb_id).encode()
        assert NewMovie.model_validate_json(value).tmdb_id == event.tmdb_id


@pytest.mark.slow
def test_backfill_reaches_a_real_broker(synthetic: SyntheticDataset, broker: Any) -> None:
    from kafka import KafkaConsumer

    from demo.broker import create_topics

    topic = f"movies.new.backfill.{uuid.uuid4().hex[:8]}"
    create_topics(broker.bootstrap_servers, {topic: 1})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "poster_genres.trainer",
            "backfill",
            "--movielens",
            str(synthetic.root),
            "--bootstrap-servers",
            broker.bootstrap_servers,
            "--topic",
            topic,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    records = [r for _, r in zip(range(len(synthetic.unlabelled)), consumer, strict=False)]
    consumer.close()
    assert sorted(int(r.key) for r in records) == sorted(synthetic.unlabelled)
    assert all(decode_new_movie(r.value).tmdb_id == int(r.key) for r in records)
    assert Path(synthetic.root).is_dir() and json.loads(records[0].value)["schema_version"] == 1
