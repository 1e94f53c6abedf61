"""Deterministic ids: a record delivered again yields an output with the same ids.

Events without an `event_id` get one derived from topic/partition/offset, and each
output's own id derives from (source_event_id, model_version); so a consumer that
deduplicates on either id sees a redelivered record as the duplicate it is.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from poster_genres.worker.jobs import ID_NAMESPACE, decode_batch
from poster_genres.worker.results import ResultBuilder
from tests.fakes import FakeClassifier, event_record, poster
from tests.fixtures import kill, produce, start_worker, wait_for, worker_env, written


def test_ids_derive_from_where_the_record_is_stored_and_the_model_version():
    records = [event_record(4, 603), event_record(4, 603, partition=1), event_record(5, 604)]
    first, again = decode_batch(records, 65536), decode_batch(records, 65536)
    ids = [job.event_id for job in first.jobs]
    assert ids == [job.event_id for job in again.jobs]
    assert len(set(ids)) == 3
    assert ids[0] == str(uuid.uuid5(ID_NAMESPACE, "movies.new/0/4"))
    given = decode_batch([event_record(4, 603, event_id="ev-1")], 65536).jobs[0]
    assert given.event_id == "ev-1"

    builder = ResultBuilder("out", "dlq")

    def output_id(job, version):
        job.poster, classifier = poster(603, b"R"), FakeClassifier(version=version)
        job.scores = classifier.scores([b"R"])[0]
        return json.loads(builder.build(job, classifier).value)["event_id"]

    assert output_id(first.jobs[0], 1) == output_id(again.jobs[0], 1)
    assert output_id(first.jobs[0], 2) != output_id(first.jobs[0], 1)
    assert output_id(first.jobs[1], 1) != output_id(first.jobs[0], 1)


def rewind(bootstrap: str, topic: str, group: str, timeout_s: float = 60) -> None:
    """Join `group` and set its committed offsets of `topic` back to 0 (as if commits were lost)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    try:
        consumer.subscribe([topic])
        parts = {TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}}
        deadline = time.monotonic() + timeout_s
        while consumer.assignment() != parts:  # the killed member leaves when its session ends
            assert time.monotonic() < deadline, "the group never handed over every partition"
            consumer.poll(timeout_ms=500, max_records=1)
        consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in parts})
    finally:
        consumer.close(autocommit=False)


def read_all(bootstrap: str, topic: str, quiet_s: float = 3.0) -> list[dict]:
    """Every record of `topic`, read until nothing new came for `quiet_s`.

    (Tansu's end offsets lag behind the last batch, so they cannot say where the end is.)
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        records: list[dict] = []
        last_new = time.monotonic()
        while time.monotonic() - last_new < quiet_s:
            for batch in consumer.poll(timeout_ms=500).values():
                records += [json.loads(r.value) for r in batch]
                last_new = time.monotonic()
        return records
    finally:
        consumer.close()


@pytest.mark.slow
def test_a_record_redelivered_after_sigkill_gets_the_same_ids(broker, topics, model_dir, tmdb):
    from demo.tmdb import StandInMovie
    from tests.fixtures import COLOURS, poster_bytes

    total = 60
    for i in range(1, total + 1):
        tmdb.movies[i] = StandInMovie(poster_bytes(COLOURS["Green"]))
    values = [(str(i).encode(), json.dumps({"tmdb_id": i}).encode()) for i in range(1, total + 1)]
    produce(broker.bootstrap_servers, topics.input, values)
    env = worker_env(broker, topics, model_dir, tmdb, BATCH_SIZE="4")
    process = start_worker(env)
    done = lambda: written(broker.bootstrap_servers, topics.output, topics.dlq)
    wait_for(lambda: done() >= 12, 90, "outputs before the kill", process)
    kill(process)
    before = done()
    assert before < total, "the stream finished before the kill; make it longer"
    rewind(broker.bootstrap_servers, topics.input, topics.group)  # every record comes again
    final = start_worker(env, "--exit-when-idle", "3")
    out, _ = final.communicate(timeout=150)
    assert final.returncode == 0, out[-3000:]

    outputs = read_all(broker.bootstrap_servers, topics.output)
    by_movie: dict[int, set[tuple[str, str]]] = defaultdict(set)
    for output in outputs:
        by_movie[output["tmdb_id"]].add((output["source_event_id"], output["event_id"]))
    assert set(by_movie) == set(range(1, total + 1))
    assert len(outputs) >= before + total, "each output of the first run must come again"
    different = {i: ids for i, ids in by_movie.items() if len(ids) > 1}
    assert not different, f"redelivered records got new ids: {different}"
    assert len({ids.pop() for ids in by_movie.values()}) == total
