"""The inference stage: device failures are retried and halved, never dead-lettered."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from kafka import TopicPartition

from poster_genres.worker import inference
from poster_genres.worker.fetching import AsyncRunner
from poster_genres.worker.inference import DeviceFailed, classify_batch
from poster_genres.worker.jobs import decode_batch
from poster_genres.worker.loop import Worker
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.results import ResultBuilder
from poster_genres.worker.settings import WorkerSettings
from tests.fakes import (
    FakeClassifier,
    FakeConsumer,
    FakeFetcher,
    FakeModels,
    FakeProducer,
    event_record,
    poster,
)


def batch_of(n: int):
    batch = decode_batch([event_record(i, i + 1) for i in range(n)], 65536)
    for i, job in enumerate(batch.jobs):
        job.poster = poster(i + 1, b"RGB"[i % 3 : i % 3 + 1])
    return batch


def exhausted_over(limit: int):
    """A device that runs out of memory on batches larger than `limit`."""

    def fail(images):
        if len(images) > limit:
            return tf.errors.ResourceExhaustedError(None, None, f"OOM on {len(images)} images")
        return None

    return fail


def test_a_batch_too_large_for_the_device_is_halved_until_it_fits_and_nothing_is_dead_lettered():
    batch = batch_of(10)
    classifier = FakeClassifier(fail=exhausted_over(3))
    classify_batch(batch, classifier, WorkerMetrics(), pause_s=0)
    assert all(job.error is None and job.scores is not None for job in batch.jobs)
    assert [job.scores.argmax() for job in batch.jobs] == [i % 3 for i in range(10)]
    assert max(n for n in classifier.calls if n <= 3) == 3
    assert classifier.calls[:2] == [10, 10]  # tried again at full size before halving
    assert sum(n for n in classifier.calls if n <= 3) == 10  # each poster scored once


def test_a_transient_internal_error_costs_a_retry_not_a_dead_letter():
    failures = [tf.errors.InternalError(None, None, "device busy")]
    classifier = FakeClassifier(fail=lambda images: failures.pop() if failures else None)
    batch = batch_of(4)
    classify_batch(batch, classifier, WorkerMetrics(), pause_s=0)
    assert classifier.calls == [4, 4]
    assert all(job.error is None for job in batch.jobs)


def test_a_device_that_cannot_score_even_one_poster_stops_the_worker_uncommitted(
    caplog, monkeypatch
):
    classifier = FakeClassifier(fail=exhausted_over(0))
    with pytest.raises(DeviceFailed):
        classify_batch(batch_of(2), classifier, WorkerMetrics(), pause_s=0)

    tp = TopicPartition("movies.new", 0)
    consumer = FakeConsumer(assigned={tp}, polls=[[event_record(0, 1)]], ends={tp: 1})
    producer = FakeProducer()
    runner = AsyncRunner()
    settings = WorkerSettings(batch_linger_ms=0)
    monkeypatch.setattr(inference, "RETRY_PAUSE_S", 0)
    lost = FakeClassifier(fail=lambda images: tf.errors.UnavailableError(None, None, "lost"))
    try:
        worker = Worker(
            settings, consumer, producer, FakeFetcher({1: poster(1)}), runner, FakeModels(lost)
        )
        worker.run(exit_when_idle=0.0)
    finally:
        runner.close()
    assert worker.exit_code == 1
    assert producer.sent == [] and consumer.commits == []
    assert "device failed on one poster" in caplog.text


def test_other_model_errors_still_dead_letter_the_batch():
    classifier = FakeClassifier(fail=lambda images: ValueError("a bug"))
    batch = batch_of(2)
    classify_batch(batch, classifier, WorkerMetrics(), pause_s=0)
    assert classifier.calls == [2]
    assert all("a bug" in job.error.detail for job in batch.jobs)


def test_a_poster_with_nan_or_infinite_scores_becomes_an_invalid_scores_dead_letter():
    class Broken(FakeClassifier):
        def classify(self, images):
            rows = list(self.scores(images))
            rows[1][2] = np.nan
            rows[2][0] = np.inf
            return rows

    batch = batch_of(3)
    classify_batch(batch, Broken(), WorkerMetrics(), pause_s=0)
    assert batch.jobs[0].error is None and batch.jobs[0].scores is not None
    for job, label in ((batch.jobs[1], "Blue"), (batch.jobs[2], "Red")):
        assert job.scores is None and job.error is not None
        assert job.error.code == "invalid_scores" and label in job.error.detail
        assert job.error.attempts == 1
    letter = json.loads(ResultBuilder("out", "dlq").build(batch.jobs[1], None).value)
    assert letter["error"] == "invalid_scores"
