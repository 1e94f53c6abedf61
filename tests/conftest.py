"""Shared fixtures: an embedded broker, a TMDB stand-in, posters, a tiny model, the worker process."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import io
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from demo.broker import EmbeddedBroker, create_topics
from demo.tmdb import TmdbStandIn

if TYPE_CHECKING:
    from worker.fetching import AsyncRunner
    from worker.reload import ModelWatcher

LABELS = ["Red", "Green", "Blue"]
COLOURS = {"Red": (230, 20, 20), "Green": (20, 230, 20), "Blue": (20, 20, 230)}


def poster_bytes(
    colour: tuple[int, int, int], size: tuple[int, int] = (60, 90), fmt: str = "JPEG"
) -> bytes:
    """A plain poster of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


def build_tiny_model(model_dir: Path, bias: float = -4.0, labels: list[str] | None = None) -> Path:
    """Export a model honouring the contract: mean colour -> one sigmoid per colour label."""
    import numpy as np
    import tf_keras

    from schemas.model import ModelMetadata
    from trainer.export import export_version

    labels = labels or LABELS
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Input((16, 16, 3)),
            tf_keras.layers.GlobalAveragePooling2D(),
            tf_keras.layers.Dense(len(labels), activation="sigmoid"),
        ]
    )
    kernel = np.zeros((3, len(labels)), np.float32)
    for i in range(min(3, len(labels))):
        kernel[i, i] = 10.0
    model.layers[-1].set_weights([kernel, np.full(len(labels), bias, np.float32)])
    metadata = ModelMetadata(
        labels=labels,
        thresholds=[0.5] * len(labels),
        image_size=(16, 16),
        feature_extractor="tests/tiny-mean-colour",
        created_at=datetime.now(UTC),
    )
    return export_version(model, metadata, model_dir)


def poll_until(watcher: ModelWatcher, predicate: Callable[[], bool], timeout_s: float = 30) -> bool:
    """Poll `watcher` until `predicate` holds (True) or `timeout_s` has passed (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        watcher.poll()
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    build_tiny_model(path)
    return path


@pytest.fixture
def tmdb() -> Iterator[TmdbStandIn]:
    with TmdbStandIn() as server:
        yield server


@pytest.fixture
def runner() -> Iterator[AsyncRunner]:
    """The worker's asyncio loop on its thread, closed after the test."""
    from worker.fetching import AsyncRunner

    running = AsyncRunner()
    yield running
    running.close()


@dataclass
class Topics:
    input: str
    output: str
    dlq: str
    group: str


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    """Fresh topic names (and group) per test, so tests sharing the broker do not meet."""
    suffix = uuid.uuid4().hex[:8]
    names = Topics(
        f"movies.new.{suffix}", f"movies.genres.{suffix}", f"movies.new.dlq.{suffix}", f"g-{suffix}"
    )
    create_topics(broker.bootstrap_servers, {names.input: 2, names.output: 1, names.dlq: 1})
    return names


def worker_env(
    broker: EmbeddedBroker, topics: Topics, model_dir: Path, tmdb: TmdbStandIn, **extra: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        INPUT_TOPIC=topics.input,
        OUTPUT_TOPIC=topics.output,
        DLQ_TOPIC=topics.dlq,
        GROUP_ID=topics.group,
        MODEL_DIR=str(model_dir),
        TMDB_BASE_URL=tmdb.base_url,
        POSTER_HOSTS=tmdb.host,
        HTTP_PORT="0",
        SESSION_TIMEOUT_MS="6000",
        HEARTBEAT_INTERVAL_MS="1000",
        BACKOFF_BASE_S="0.05",
        BACKOFF_MAX_S="1",
        BATCH_SIZE="8",
        SITE_RATE_LIMIT="0",  # the stand-in is no site to be polite to: thousands of events
        IMAGE_RATE_LIMIT="0",
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(
    process: subprocess.Popen[str],
    timeout: float = 120,
    why: str = "the worker did not exit in time",
) -> str:
    """Wait for the worker to exit and return its output; past `timeout` s, kill it and fail."""
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        pytest.fail(f"{why}:\n{out[-4000:]}")
    return out


def stop(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """SIGTERM the worker and `finish` it: its output."""
    process.send_signal(signal.SIGTERM)
    return finish(process, timeout)


def produce(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes | None]]) -> None:
    """Send (key, value) pairs and wait for the acknowledgements."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=16 * 1024 * 1024
    )
    try:
        for key, value in values:
            producer.send(topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def event(tmdb_id: int, **fields: object) -> tuple[bytes, bytes]:
    body = {"tmdb_id": tmdb_id, "event_id": f"ev-{tmdb_id}", **fields}
    return str(tmdb_id).encode(), json.dumps(body).encode()


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[dict]:
    """Read `topic` from the start until `expected` records arrived (or the timeout)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    partitions = consumer.partitions_for_topic(topic) or {0}
    consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
    records: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += [json.loads(r.value) for r in batch]
    finally:
        consumer.close()
    return records
