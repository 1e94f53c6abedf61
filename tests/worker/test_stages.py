"""Each stage of the worker's batch path, called directly with plain records and fake clients."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError, NotLeaderForPartitionError
from kafka.structs import OffsetAndMetadata

from poster_genres.posters import PosterNotFound, PosterUnreadable
from poster_genres.worker.errors import InvalidEvent, WorkerError
from poster_genres.worker.fetching import PosterDownloads
from poster_genres.worker.inference import classify_batch
from poster_genres.worker.jobs import decode_batch
from poster_genres.worker.loop import Worker
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.partitions import commit_owned, keep_alive, lag
from poster_genres.worker.publisher import Outcome
from poster_genres.worker.results import Result, ResultBuilder
from poster_genres.worker.settings import WorkerSettings
from tests.fakes import (
    FakeClassifier,
    FakeConsumer,
    FakeFetcher,
    FakeFuture,
    FakeModels,
    FakeProducer,
    event_record,
    poster,
    publisher_on,
    record,
    worker_on,
)

TP0, TP1 = TopicPartition("movies.new", 0), TopicPartition("movies.new", 1)


# -- decoding ------------------------------------------------------------------------------


def test_decode_batch_keeps_order_flags_invalid_values_and_offsets_are_max_plus_one():
    records = [
        event_record(7, 603, partition=0, event_id="ev-603"),
        record(3, b"not json", b"k", partition=1),
        event_record(5, 604, partition=0),
        record(4, None, partition=1),
        event_record(2, 605, partition=1),
    ]
    batch = decode_batch(records, max_event_bytes=65536)
    assert [job.record for job in batch.jobs] == records
    assert batch.jobs[0].event is not None and batch.jobs[0].event.tmdb_id == 603
    assert batch.jobs[0].event_id == "ev-603"
    assert batch.jobs[2].event_id and batch.jobs[2].event_id != batch.jobs[4].event_id
    for invalid in (batch.jobs[1], batch.jobs[3]):
        assert isinstance(invalid.error, InvalidEvent) and invalid.event is None
    assert "tombstone" in batch.jobs[3].error.detail
    assert batch.offsets == {TP0: 8, TP1: 5}
    assert batch.error_codes() == {"invalid_event": 2}


def test_a_value_over_the_event_limit_is_an_invalid_event():
    batch = decode_batch([event_record(0, 1, title="x" * 500)], max_event_bytes=100)
    assert isinstance(batch.jobs[0].error, InvalidEvent)
    assert "over the limit of 100" in batch.jobs[0].error.detail


# -- results -------------------------------------------------------------------------------

BUILDER = ResultBuilder("movies.genres", "movies.new.dlq")


def test_a_dead_letter_carries_the_error_and_the_raw_record():
    job = decode_batch([record(9, b"\xff\xfe bad", b"key-9", partition=1)], 65536).jobs[0]
    result = BUILDER.build(job, None)
    assert (result.topic, result.key, result.code) == ("movies.new.dlq", b"key-9", "invalid_event")
    letter = json.loads(result.value)
    assert letter["error"] == "invalid_event" and "not UTF-8" in letter["detail"]
    original = letter["original"]
    assert (original["topic"], original["partition"], original["offset"]) == ("movies.new", 1, 9)
    assert original["value_encoding"] == "base64"
    assert base64.b64decode(original["value"]) == b"\xff\xfe bad"
    assert base64.b64decode(original["key"]) == b"key-9"
    assert result.input_timestamp_ms == job.record.timestamp


def test_a_dead_letter_keeps_the_input_headers_and_adds_its_origin_as_headers():
    raw = record(9, b"[]", b"k", partition=1)._replace(
        headers=[("traceparent", b"00-1"), ("dlq.error.code", b"stale")]
    )
    result = BUILDER.build(decode_batch([raw], 65536).jobs[0], None)
    assert result.headers == [
        ("traceparent", b"00-1"),
        ("dlq.error.code", b"invalid_event"),
        ("dlq.original.topic", b"movies.new"),
        ("dlq.original.partition", b"1"),
        ("dlq.original.offset", b"9"),
        ("dlq.attempts", b"0"),
    ]
    producer = FakeProducer()
    publisher_on(producer).publish([result])
    assert producer.headers == [result.headers]


def test_an_output_names_its_source_event_and_every_label():
    job = decode_batch([event_record(0, 603, event_id="ev-1", title="The Matrix")], 65536).jobs[0]
    job.poster = poster(603, b"R...")
    classifier = FakeClassifier(version=4)
    job.scores = classifier.scores([b"R"])[0]
    result = BUILDER.build(job, classifier)
    assert (result.topic, result.key, result.code) == ("movies.genres", b"603", "")
    output = json.loads(result.value)
    assert output["source_event_id"] == "ev-1" and output["event_id"] != "ev-1"
    assert output["genres"] == ["Red"] and set(output["scores"]) == {"Red", "Green", "Blue"}
    assert (output["model_version"], output["title"]) == (4, "The Matrix")
    assert output["poster_url"] == "http://img.test/603.jpg"
    assert result.model_version == 4 and result.headers == []


def test_a_job_with_neither_scores_nor_error_becomes_an_internal_error_dead_letter():
    job = decode_batch([event_record(0, 603)], 65536).jobs[0]
    result = BUILDER.build(job, FakeClassifier())
    letter = json.loads(result.value)
    assert result.code == "internal_error" and result.topic == "movies.new.dlq"
    assert "neither scores nor an error" in letter["detail"] and letter["tmdb_id"] == 603


# -- fetching and classifying --------------------------------------------------------------


def test_downloads_fill_posters_and_errors_and_keep_the_member_alive(runner):
    fetcher = FakeFetcher(
        {1: poster(1), 2: PosterNotFound("no poster"), 3: RuntimeError("bug")}, delay_s=0.3
    )
    fetcher.retries = 2
    metrics = WorkerMetrics()
    downloads = PosterDownloads(fetcher, runner, metrics, keep_alive_s=0.05)
    batch = decode_batch([event_record(i, i) for i in (1, 2, 3)] + [record(4, b"{}")], 65536)
    downloads.start(batch)
    alive = []
    downloads.collect(batch, lambda: alive.append(1))
    assert sorted(fetcher.asked) == [1, 2, 3]
    assert batch.jobs[0].poster == poster(1) and batch.jobs[0].error is None
    assert isinstance(batch.jobs[1].error, PosterNotFound)
    assert type(batch.jobs[2].error) is WorkerError
    assert "RuntimeError: bug" in batch.jobs[2].error.detail
    assert batch.jobs[3].fetch is None
    assert len(alive) >= 2
    assert metrics.registry.get_sample_value("genre_worker_fetch_retries_total") == 2


def test_classify_batch_scores_posters_in_one_call_and_isolates_failures():
    batch = decode_batch([event_record(i, i + 1) for i in range(3)], 65536)
    batch.jobs[0].poster, batch.jobs[1].poster = poster(1, b"R"), poster(2, b"G", attempts=3)
    batch.jobs[2].error = PosterNotFound("none")
    classifier = FakeClassifier()
    classify_batch(batch, classifier, WorkerMetrics())
    assert classifier.calls == [2]
    assert batch.jobs[0].scores is not None and batch.jobs[0].scores.argmax() == 0
    assert batch.jobs[1].scores is not None and batch.jobs[1].scores.argmax() == 1

    broken = FakeClassifier(fail=lambda images: RuntimeError("device lost"))
    batch = decode_batch([event_record(0, 1)], 65536)
    batch.jobs[0].poster = poster(1, attempts=2)
    classify_batch(batch, broken, WorkerMetrics())
    assert "device lost" in batch.jobs[0].error.detail and batch.jobs[0].error.attempts == 2


def test_an_unreadable_poster_keeps_its_attempts():
    class Unreadable(FakeClassifier):
        def classify(self, images):
            return [PosterUnreadable("no")] + list(self.scores(images[1:]))

    batch = decode_batch([event_record(0, 1), event_record(1, 2)], 65536)
    batch.jobs[0].poster, batch.jobs[1].poster = poster(1, attempts=4), poster(2, b"R")
    classify_batch(batch, Unreadable(), WorkerMetrics())
    assert isinstance(batch.jobs[0].error, PosterUnreadable) and batch.jobs[0].error.attempts == 4
    assert batch.jobs[1].scores is not None


# -- publishing ----------------------------------------------------------------------------


def results(n: int) -> list[Result]:
    return [Result("movies.genres", str(i).encode(), b"{}", "", None) for i in range(n)]


def test_send_reports_a_failed_future_and_publish_sends_it_again():
    failures = {b"1": 2}

    def answer(topic, key, value):
        if failures.get(key, 0) > 0:
            failures[key] -= 1
            return FakeFuture(NotLeaderForPartitionError("moved"))
        return FakeFuture()

    producer = FakeProducer(answer)
    metrics = WorkerMetrics()
    alive = []
    publisher = publisher_on(
        producer, metrics=metrics, keep_alive=lambda: alive.append(1), first_pause_s=0.01
    )
    delivery = publisher.send(results(3))
    assert [r.key for r in delivery.acknowledged] == [b"0", b"2"]
    assert [(r.key, type(e)) for r, e in delivery.failed] == [(b"1", NotLeaderForPartitionError)]
    assert delivery.settled
    assert publisher.publish(results(3)) is Outcome.ACKNOWLEDGED
    assert [key for _, key, _ in producer.sent] == [b"0", b"1", b"2", b"0", b"1", b"2", b"1"]
    assert sorted(key for _, key, _ in producer.acknowledged) == [b"0", b"0", b"1", b"2", b"2"]
    assert metrics.outputs_produced.labels(model_version="")._value.get() == 5
    assert len(alive) == 1  # one keep-alive poll before the second round


def test_a_send_the_producer_cannot_queue_fails_the_rest_of_the_round_too():
    calls = []

    def answer(topic, key, value):
        calls.append(key)
        return KafkaTimeoutError("no metadata") if len(calls) == 2 else FakeFuture()

    publisher = publisher_on(FakeProducer(answer))
    delivery = publisher.send(results(4))
    assert [r.key for r in delivery.acknowledged] == [b"0"]
    assert [r.key for r, _ in delivery.failed] == [b"1", b"2", b"3"]
    assert calls == [b"0", b"1"]


def test_a_stop_gives_unacknowledged_sends_a_grace_period_then_gives_up():
    stopped = threading.Event()
    producer = FakeProducer(lambda t, k, v: FakeFuture(done=False))
    publisher = publisher_on(producer, stopped=stopped, grace_s=0.2)
    threading.Timer(0.1, stopped.set).start()
    began = time.monotonic()
    assert publisher.publish(results(2)) is Outcome.STOPPED
    assert 0.25 <= time.monotonic() - began < 5
    assert producer.flushes >= 1


def test_a_stop_during_the_pause_between_rounds_gives_up():
    stopped = threading.Event()
    producer = FakeProducer(lambda t, k, v: FakeFuture(KafkaTimeoutError("broker away")))
    publisher = publisher_on(producer, stopped=stopped, first_pause_s=5)
    threading.Timer(0.1, stopped.set).start()
    began = time.monotonic()
    assert publisher.publish(results(1)) is Outcome.STOPPED
    assert time.monotonic() - began < 2 and len(producer.sent) == 1


# -- the consumer group --------------------------------------------------------------------


def test_commit_skips_revoked_partitions_and_reports_refusals():
    consumer = FakeConsumer(assigned={TP0})
    assert commit_owned(consumer, {TP0: 8, TP1: 5}) is True
    assert consumer.commits == [{TP0: OffsetAndMetadata(8, "", -1)}]
    assert commit_owned(consumer, {TP1: 5}) is False
    assert len(consumer.commits) == 1
    consumer.commit_error = CommitFailedError("rebalanced")
    assert commit_owned(consumer, {TP0: 9}) is False


def test_keep_alive_polls_with_everything_paused_and_resumes_what_is_still_owned():
    consumer = FakeConsumer(assigned={TP0, TP1}, polls=[[event_record(0, 1)]])

    def revoke_one(c: FakeConsumer) -> None:
        assert c.paused == {TP0, TP1}
        c.assigned = {TP0}

    consumer.on_poll = revoke_one
    keep_alive(consumer)
    assert consumer.polls, "a keep-alive poll must not take records"
    assert consumer.paused == {TP1}  # TP1 is no longer ours: nothing to resume


def test_lag_is_end_minus_position_per_assigned_partition():
    consumer = FakeConsumer(assigned={TP0, TP1}, ends={TP0: 10, TP1: 4}, positions={TP0: 7, TP1: 4})
    assert lag(consumer) == {TP0: 3, TP1: 0}
    assert lag(FakeConsumer()) is None


# -- the loop over all of them -------------------------------------------------------------


def test_the_worker_loop_runs_batches_through_every_stage_and_summarises_from_metrics(
    runner, caplog
):
    caplog.set_level("INFO", logger="poster_genres.worker.loop")
    first = [event_record(0, 1), event_record(1, 2), record(2, b"oops", b"k")]
    polls = [first, [event_record(3, 3)]]
    consumer = FakeConsumer(assigned={TP0}, polls=polls, ends={TP0: 4})
    producer = FakeProducer()
    fetcher = FakeFetcher({1: poster(1, b"R"), 2: PosterNotFound("no poster"), 3: poster(3, b"G")})
    metrics = worker_on(consumer, producer, fetcher, runner).run(exit_when_idle=0.0)
    assert [(topic, key) for topic, key, _ in producer.sent] == [
        ("out", b"1"),
        ("dlq", b"2"),
        ("dlq", b"k"),
        ("out", b"3"),
    ]
    assert [c[TP0].offset for c in consumer.commits] == [3, 4]
    summary = (
        "consumed=4 produced=2 dead_letters=2 (invalid_event=1, poster_not_found=1) "
        "batches=2 commits=2"
    )
    assert metrics.summary() == summary
    assert f"worker stopped: {summary}" in caplog.text


def test_ready_needs_a_model_and_group_membership_and_allows_zero_partitions():
    consumer = FakeConsumer(generation=-1)
    models = FakeModels(None)
    worker = Worker(
        WorkerSettings(group_id="genres"),
        consumer,
        FakeProducer(),  # type: ignore[arg-type]
        FakeFetcher({}),
        None,
        models,  # type: ignore[arg-type]
    )
    assert worker.ready() == (False, "no model loaded")
    models.current = FakeClassifier(version=3)
    assert worker.ready() == (False, "not in consumer group genres yet")
    consumer.generation = 4
    assert worker.ready() == (True, "model version 3, generation 4, 0 partitions (standby)")
    consumer.assigned = {TP0, TP1}
    assert worker.ready() == (True, "model version 3, generation 4, 2 partitions")


@pytest.mark.parametrize(("ahead", "sent_before_third_poll"), [(1, 1), (2, 0)])
def test_fetch_ahead_polls_more_batches_while_the_oldest_downloads(
    runner, ahead, sent_before_third_poll
):
    """Slow downloads: with FETCH_AHEAD=2 the third batch is polled (its posters started)
    before the first is finished; with 1, the first is finished first. Order is kept."""
    seen: list[int] = []
    producer = FakeProducer()

    def on_poll(consumer: FakeConsumer) -> None:
        seen.append(len(producer.sent))

    polls = [[event_record(i, i + 1)] for i in range(3)]
    consumer = FakeConsumer(assigned={TP0}, polls=polls, ends={TP0: 3}, on_poll=on_poll)
    fetcher = FakeFetcher({i: poster(i, b"R") for i in (1, 2, 3)}, delay_s=0.5)
    worker_on(consumer, producer, fetcher, runner, fetch_ahead=ahead).run(exit_when_idle=0.0)
    assert seen[2] == sent_before_third_poll
    assert [key for _, key, _ in producer.sent] == [b"1", b"2", b"3"]
    assert [c[TP0].offset for c in consumer.commits] == [1, 2, 3]
