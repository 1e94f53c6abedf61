"""A dead letter is always sendable: capped keys, a capped serialised size, and refusals.

A record the broker will never take must not be retried forever (the batch would never
commit): it is sent again as a smaller dead letter, and if even that is refused the
worker exits non-zero with the offset uncommitted.
"""

from __future__ import annotations

import json

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import MessageSizeTooLargeError, TopicAuthorizationFailedError

from demo.tmdb import StandInMovie
from poster_genres.worker.jobs import decode_batch
from poster_genres.worker.publisher import Outcome
from poster_genres.worker.results import ResultBuilder
from tests.fakes import (
    FakeClassifier,
    FakeConsumer,
    FakeFetcher,
    FakeFuture,
    FakeProducer,
    event_record,
    poster,
    publisher_on,
    record,
    worker_on,
)
from tests.fixtures import (
    COLOURS,
    consume_all,
    event,
    finish,
    poster_bytes,
    produce,
    start_worker,
    worker_env,
)

BIG_KEY = b"\x01" * 400_000  # 2.4 MB once JSON escapes each byte as \u0001
BIG_VALUE = b"\x01" * 180_000  # 1.08 MB escaped: under the 256 KiB kept, over the letter cap


def test_a_huge_key_is_cut_to_one_kib_and_an_escaped_value_that_would_not_fit_is_dropped():
    builder = ResultBuilder("out", "dlq", max_dead_letter_bytes=900_000)
    job = decode_batch([record(5, BIG_VALUE, BIG_KEY)], 65536).jobs[0]
    result = builder.build(job, None)
    assert len(result.key or b"") <= 1024
    assert len(result.key or b"") + len(result.value) <= 900_000
    letter = json.loads(result.value)
    original = letter["original"]
    assert letter["error"] == "invalid_event"
    assert original["key"] == "\x01" * 1024
    assert (original["key_bytes"], original["key_truncated"]) == (400_000, True)
    assert original["value"] is None and original["value_dropped"] is True
    assert original["value_bytes"] == 180_000
    assert "raw value dropped" in letter["detail"] and "MAX_DEAD_LETTER_BYTES" in letter["detail"]


def test_a_value_that_fits_is_kept_and_nothing_is_flagged():
    builder = ResultBuilder("out", "dlq", max_dead_letter_bytes=900_000)
    job = decode_batch([record(5, b"\x01" * 1000, b"k")], 65536).jobs[0]
    original = json.loads(builder.build(job, None).value)["original"]
    assert original["value"] == "\x01" * 1000
    assert not original["value_dropped"] and not original["key_truncated"]
    assert original["key_bytes"] == 1


def test_a_utf8_key_is_cut_between_characters():
    builder = ResultBuilder("out", "dlq")
    key = "é".encode() * 600  # 1200 bytes, two per character
    job = decode_batch([record(1, b"nope", key)], 65536).jobs[0]
    letter = json.loads(builder.build(job, None).value)
    assert letter["original"]["value_encoding"] == "utf-8"
    assert letter["original"]["key"] == "é" * 512


def refusing(topics: set[str], error: Exception):
    """A producer answer that refuses every record for `topics` (and counts them)."""

    def answer(topic, key, value):
        return FakeFuture(error) if topic in topics else FakeFuture()

    return answer


def test_a_refused_output_is_sent_again_as_a_dead_letter_not_retried_forever():
    builder = ResultBuilder("out", "dlq")
    job = decode_batch([event_record(0, 603, event_id="ev-1")], 65536).jobs[0]
    job.poster, classifier = poster(603, b"R"), FakeClassifier()
    job.scores = classifier.scores([b"R"])[0]
    producer = FakeProducer(refusing({"out"}, TopicAuthorizationFailedError("out")))
    publisher = publisher_on(producer, shrink=builder.refused, first_pause_s=30)
    assert publisher.publish([builder.build(job, classifier)]) is Outcome.ACKNOWLEDGED
    assert [topic for topic, _, _ in producer.sent] == ["out", "dlq"]
    letter = json.loads(producer.acknowledged[0][2])
    assert letter["error"] == "internal_error" and letter["source_event_id"] == "ev-1"
    assert (
        "refused the output" in letter["detail"] and "TopicAuthorizationFailed" in letter["detail"]
    )


def test_a_dead_letter_refused_by_the_producer_is_sent_again_without_its_value():
    builder = ResultBuilder("out", "dlq")
    job = decode_batch([record(3, b"x" * 5000, b"k")], 65536).jobs[0]

    def answer(topic, key, value):
        if len(value) > 2000:
            return MessageSizeTooLargeError("over max_request_size")  # raised by send()
        return FakeFuture()

    producer = FakeProducer(answer)
    publisher = publisher_on(producer, shrink=builder.refused, first_pause_s=30)
    assert publisher.publish([builder.build(job, None)]) is Outcome.ACKNOWLEDGED
    assert len(producer.sent) == 2
    letter = json.loads(producer.acknowledged[0][2])
    assert letter["error"] == "invalid_event"
    assert letter["original"]["value_dropped"] and letter["original"]["value_bytes"] == 5000
    assert "refused its dead letter" in letter["detail"]


def test_when_even_the_smallest_dead_letter_is_refused_the_worker_exits_1_uncommitted(
    runner, caplog
):
    tp = TopicPartition("movies.new", 0)
    consumer = FakeConsumer(assigned={tp}, polls=[[record(0, b"bad", b"k")]], ends={tp: 1})
    producer = FakeProducer(refusing({"dlq"}, TopicAuthorizationFailedError("dlq")))
    worker = worker_on(consumer, producer, FakeFetcher({}), runner)
    worker.run(exit_when_idle=0.0)
    assert worker.exit_code == 1
    assert consumer.commits == []
    assert len(producer.sent) == 2  # the letter, then the same letter without its value
    assert "cannot be stored" in caplog.text


@pytest.mark.slow
def test_a_huge_key_and_an_escaped_value_reach_the_dead_letter_topic(
    broker, topics, model_dir, tmdb
):
    tmdb.movies[7] = StandInMovie(poster_bytes(COLOURS["Red"]))
    produce(broker.bootstrap_servers, topics.input, [(BIG_KEY, BIG_VALUE), (b"small", BIG_VALUE)])
    produce(broker.bootstrap_servers, topics.input, [event(7)])
    process = start_worker(worker_env(broker, topics, model_dir, tmdb), "--exit-when-idle", "3")
    out = finish(process, why="the worker did not finish (a dead letter retried forever?)")
    assert process.returncode == 0, out[-3000:]
    letters = consume_all(broker.bootstrap_servers, topics.dlq, 2, timeout_s=20)
    outputs = consume_all(broker.bootstrap_servers, topics.output, 1, timeout_s=20)
    assert [o["tmdb_id"] for o in outputs] == [7]
    assert len(letters) == 2
    by_key_size = {letter["original"]["key_bytes"]: letter for letter in letters}
    assert set(by_key_size) == {400_000, 5}
    for letter in letters:
        assert letter["error"] == "invalid_event"
        assert letter["original"]["value_dropped"] and letter["original"]["value_bytes"] == 180_000
        assert len(json.dumps(letter).encode()) < 900_000
    assert by_key_size[400_000]["original"]["key_truncated"]
    assert len(by_key_size[400_000]["original"]["key"]) == 1024
    assert committed(broker.bootstrap_servers, topics) == 3


def committed(bootstrap: str, topics) -> int:
    """The group's committed offsets of the input topic, summed over partitions."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=topics.group)
    try:
        parts = [
            TopicPartition(topics.input, p) for p in consumer.partitions_for_topic(topics.input)
        ]
        return sum(consumer.committed(tp) or 0 for tp in parts)
    finally:
        consumer.close()
