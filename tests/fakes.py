"""Plain stand-ins for the Kafka clients, the fetcher and the model: stages run without a broker."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import ConsumerGroupMetadata, OffsetAndMetadata

from poster_genres.posters import FetchStats, Poster
from poster_genres.worker.errors import WorkerError
from poster_genres.worker.fetching import AsyncRunner
from poster_genres.worker.loop import Worker
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.publisher import Publisher
from poster_genres.worker.settings import WorkerSettings

LABELS = ["Red", "Green", "Blue"]


def record(
    offset: int,
    value: bytes | None,
    key: bytes | None = None,
    partition: int = 0,
    topic: str = "movies.new",
    timestamp: int = 1_700_000_000_000,
) -> ConsumerRecord:
    """A ConsumerRecord as kafka-python's fetcher returns it."""
    return ConsumerRecord(
        topic,
        partition,
        -1,
        offset,
        timestamp,
        0,
        key,
        value,
        [],
        None,
        len(key or b""),
        len(value or b""),
        -1,
    )


def event_record(offset: int, tmdb_id: int, partition: int = 0, **fields: Any) -> ConsumerRecord:
    """A record carrying a valid `movies.new` event."""
    value = json.dumps({"tmdb_id": tmdb_id, **fields}).encode()
    return record(offset, value, str(tmdb_id).encode(), partition)


def poster(
    tmdb_id: int,
    content: bytes = b"image",
    attempts: int = 1,
    page_genres: tuple[str, ...] | None = None,
) -> Poster:
    """A downloaded poster of `content`, from a page that lists `page_genres`."""
    url = f"http://img.test/{tmdb_id}.jpg"
    return Poster(tmdb_id, url, content, "image/jpeg", 10, 15, attempts, page_genres)


class FakeFuture:
    """A send's future: settled at once (or never, with `done=False`)."""

    def __init__(self, error: Exception | None = None, done: bool = True):
        self.error = error
        self.is_done = done

    def get(self, timeout: float | None = None) -> object:
        if not self.is_done:
            raise AssertionError("get() on a future that is not done")
        if self.error is not None:
            raise self.error
        return object()


@dataclass
class FakeProducer:
    """Records every send; `answer(topic, key, value)` decides each send's fate."""

    answer: Callable[[str, bytes | None, bytes], FakeFuture | Exception] = lambda t, k, v: (
        FakeFuture()
    )
    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    acknowledged: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    flushes: int = 0

    headers: list[list[tuple[str, bytes]] | None] = field(default_factory=list)

    def send(
        self,
        topic: str,
        key: bytes | None = None,
        value: bytes = b"",
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FakeFuture:
        self.sent.append((topic, key, value))
        self.headers.append(headers)
        fate = self.answer(topic, key, value)
        if isinstance(fate, Exception):
            raise fate
        if fate.is_done and fate.error is None:
            self.acknowledged.append((topic, key, value))
        return fate

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1


@dataclass
class FakeConsumer:
    """Hands out prepared polls; keeps an assignment, positions, ends and what was committed."""

    assigned: set[TopicPartition] = field(default_factory=set)
    polls: list[list[ConsumerRecord]] = field(default_factory=list)
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    commits: list[dict[TopicPartition, OffsetAndMetadata]] = field(default_factory=list)
    commit_error: Exception | None = None
    paused: set[TopicPartition] = field(default_factory=set)
    empty_polls: int = 0
    on_poll: Callable[[FakeConsumer], None] | None = None
    generation: int = 1  # the group generation this member joined; -1: not a member

    def group_metadata(self) -> ConsumerGroupMetadata:
        return ConsumerGroupMetadata("g", self.generation, "member-1", None, "stable")

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if self.on_poll is not None:
            self.on_poll(self)
        if self.paused >= self.assigned or not self.polls:
            self.empty_polls += 1
            return {}
        records = self.polls.pop(0)
        by_tp: dict[TopicPartition, list[ConsumerRecord]] = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            by_tp.setdefault(tp, []).append(rec)
            self.positions[tp] = max(self.positions.get(tp, 0), rec.offset + 1)
        return by_tp

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused -= set(partitions)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int = 0) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.commits.append(dict(offsets))

    def end_offsets(
        self, partitions: list[TopicPartition], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]:
        return {tp: self.ends.get(tp, 0) for tp in partitions}

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return self.positions.get(tp, 0)


class FakeFetcher:
    """`fetch` answers from a dict: a Poster, or an exception to raise."""

    def __init__(self, answers: dict[int, Poster | Exception], delay_s: float = 0.0):
        self.answers = answers
        self.delay_s = delay_s
        self.retries = 0
        self.asked: list[int] = []

    def stats(self) -> FetchStats:
        return FetchStats(self.retries)

    async def fetch(self, tmdb_id: int) -> Poster:
        self.asked.append(tmdb_id)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        answer = self.answers[tmdb_id]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeClassifier:
    """Scores an image by its first byte: b"R" red, b"G" green, anything else blue."""

    def __init__(
        self, version: int = 1, fail: Callable[[list[bytes]], Exception | None] | None = None
    ):
        self.version = version
        self.labels = LABELS
        self.calls: list[int] = []
        self.fail = fail or (lambda images: None)

    def scores(self, images: list[bytes]) -> np.ndarray:
        rows = [
            [0.9, 0.1, 0.1]
            if i[:1] == b"R"
            else [0.1, 0.9, 0.1]
            if i[:1] == b"G"
            else [0.1, 0.1, 0.9]
            for i in images
        ]
        return np.asarray(rows, np.float32).reshape(len(images), 3)

    def classify(self, images: list[bytes]) -> list[np.ndarray | WorkerError]:
        self.calls.append(len(images))
        error = self.fail(images)
        if error is not None:
            raise error
        return list(self.scores(images))

    def genres(self, row: np.ndarray) -> tuple[list[str], dict[str, float]]:
        by_label = {label: round(float(s), 6) for label, s in zip(self.labels, row)}
        chosen = [label for label in self.labels if by_label[label] >= 0.5]
        return sorted(chosen, key=lambda label: -by_label[label]), by_label


class FakeModels:
    """A model watcher that always serves one classifier."""

    def __init__(self, classifier: FakeClassifier | None):
        self.current = classifier

    def poll(self) -> None:
        return None


def publisher_on(
    producer: FakeProducer,
    metrics: WorkerMetrics | None = None,
    stopped: threading.Event | None = None,
    keep_alive: Callable[[], None] = lambda: None,
    **options: Any,
) -> Publisher:
    """A Publisher sending to `producer`; unless given: fresh metrics, never stopped, and a
    keep-alive that does nothing."""
    return Publisher(
        producer,
        WorkerMetrics() if metrics is None else metrics,
        threading.Event() if stopped is None else stopped,
        keep_alive,
        **options,
    )


def worker_on(
    consumer: FakeConsumer,
    producer: FakeProducer,
    fetcher: FakeFetcher,
    runner: AsyncRunner,
    **settings: Any,
) -> Worker:
    """A Worker on these fakes serving a FakeClassifier: outputs to `out`, dead letters to
    `dlq`, each poll a batch at once (no linger); `settings` adds to or overrides these."""
    chosen = WorkerSettings(
        **{"output_topic": "out", "dlq_topic": "dlq", "batch_linger_ms": 0, **settings}
    )
    return Worker(chosen, consumer, producer, fetcher, runner, FakeModels(FakeClassifier()))
