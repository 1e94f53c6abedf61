"""Helpers the tests share: posters, a tiny model, the worker process, Kafka, HTTP and TLS.

Pytest's fixtures (`conftest.py`) are built from these; tests import them from here.
"""

from __future__ import annotations

import io
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kafka import KafkaConsumer, TopicPartition
from PIL import Image

from demo.broker import EmbeddedBroker
from demo.tmdb import TmdbStandIn
from poster_genres.posters.http.connections import AddressGuard, Connector
from poster_genres.posters.http.transport import Timeouts, Transport
from poster_genres.posters.http.urls import parse_target

if TYPE_CHECKING:
    from poster_genres.worker.reload import ModelWatcher
    from poster_genres.worker.settings import WorkerSettings


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

    from poster_genres.schemas.model import ModelMetadata
    from poster_genres.trainer.export import export_version

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


@dataclass
class Topics:
    input: str
    output: str
    dlq: str
    group: str


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
        TMDB_IMAGE_BASE_URL=f"{tmdb.base_url}/t/p/w500",
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
        [sys.executable, "-m", "poster_genres.worker", *args],
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


def ok(body: bytes = b"hello", close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n"
    return head % (len(body), connection) + body


async def loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]  # `localhost` without asking the system (it may list ::1 too)


def timeouts(read: float | None = 5.0, pool: float | None = 10.0) -> Timeouts:
    return Timeouts(connect=5.0, read=read, write=5.0, pool=pool)


def connector(ssl_context: ssl.SSLContext | None = None) -> Connector:
    guard = AddressGuard(["127.0.0.1"], loopback)
    return Connector(guard, ssl_context or ssl.create_default_context())


async def get(transport: Transport, url: str, headers: dict[str, str] | None = None) -> bytes:
    """The body of a GET of `url`, read to its end; the response closed."""
    response = await transport.send(parse_target(url), headers or {})
    try:
        return b"".join([chunk async for chunk in response.raw_chunks()])
    finally:
        await response.aclose()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for `localhost` and 127.0.0.1, and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def written(bootstrap: str, *topics: str) -> int:
    """Records in `topics` so far (sum of end offsets)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or {0})
        ]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def wait_for(
    predicate, timeout_s: float, what: str, process: subprocess.Popen[str] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process is not None and process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            pytest.fail(f"the worker exited while waiting for {what}:\n{out[-8000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def kill(process: subprocess.Popen[str]) -> None:
    process.kill()  # SIGKILL: no clean-up, no commit
    process.communicate(timeout=30)


def member_settings(broker: EmbeddedBroker, topics: Topics, **extra: object) -> WorkerSettings:
    """A group member's settings on the embedded broker, with the fast group timings."""
    from poster_genres.worker.settings import WorkerSettings

    return WorkerSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        input_topic=topics.input,
        group_id=topics.group,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=10000,
        **extra,
    )
