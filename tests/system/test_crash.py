"""Crash without loss: SIGKILL the worker at random moments; every event still ends once (or a few times).

Duplicates are allowed (at least once) but bounded by the batches in flight at each kill.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from demo.tmdb import StandInMovie, TmdbStandIn
from tests.fixtures import (
    COLOURS,
    build_tiny_model,
    event,
    finish,
    kill,
    poster_bytes,
    produce,
    start_worker,
    wait_for,
    worker_env,
    written,
)

pytestmark = pytest.mark.slow
log = logging.getLogger(__name__)

BATCH = 32


def read_ids(bootstrap: str, topic: str) -> Counter[int]:
    """How many records in `topic` name each tmdb_id (outputs and dead letters alike)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0})]
    consumer.assign(parts)
    ends = consumer.end_offsets(parts)
    counts: Counter[int] = Counter()
    deadline = time.monotonic() + 60
    try:
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    counts[json.loads(record.value)["tmdb_id"]] += 1
    finally:
        consumer.close()
    return counts


@pytest.fixture
def standin_for(request: pytest.FixtureRequest):
    def make(ids: range) -> TmdbStandIn:
        image = poster_bytes(COLOURS["Red"])
        standin = TmdbStandIn(movies={i: StandInMovie(image, title=f"M{i}") for i in ids}).start()
        request.addfinalizer(standin.stop)
        return standin

    return make


def test_sigkill_at_random_moments_loses_nothing(
    broker, topics, tmp_path: Path, model_dir: Path, standin_for
) -> None:
    rng = random.Random(6)
    total, kills = 2000, 4
    models = tmp_path / "models"
    shutil.copytree(model_dir, models)
    standin = standin_for(range(1, total + 1))
    produce(broker.bootstrap_servers, topics.input, [event(i) for i in range(1, total + 1)])
    env = worker_env(broker, topics, models, standin, BATCH_SIZE=str(BATCH), MODEL_POLL_S="1")
    done = lambda: written(broker.bootstrap_servers, topics.output, topics.dlq)
    started = time.monotonic()
    for n in range(kills):
        process = start_worker(env)
        before = done()
        wait_for(lambda before=before: done() > before, 90, "progress after a restart", process)
        # a new model version appears while events stream; the kill lands during or after
        # the reload
        if n == 1:
            build_tiny_model(models, bias=-3.0)
        time.sleep(rng.uniform(0.3, 2.5))
        assert done() < total, "the stream finished before the kill; make it longer"
        log.info("kill %d after %d results", n + 1, done())
        kill(process)
    final = start_worker(env, "--exit-when-idle", "4")
    out, _ = final.communicate(timeout=150)
    assert final.returncode == 0, out[-3000:]
    took = time.monotonic() - started

    outputs = read_ids(broker.bootstrap_servers, topics.output)
    letters = read_ids(broker.bootstrap_servers, topics.dlq)
    seen = outputs + letters
    missing = set(range(1, total + 1)) - set(seen)
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:10]}"
    assert not letters, f"good events were dead-lettered: {sum(letters.values())}"
    duplicates = sum(seen.values()) - total
    assert duplicates <= kills * 3 * BATCH, f"{duplicates} duplicates for {kills} kills"
    assert "now serving model version 2" in out or "loaded model version 2" in out
    print(f"crash: {total} events, {kills} SIGKILLs, {duplicates} duplicates, 0 lost, {took:.0f} s")


def test_a_second_worker_takes_over_when_one_is_killed(
    broker, topics, model_dir: Path, standin_for
) -> None:
    total = 600
    standin = standin_for(range(1, total + 1))
    produce(broker.bootstrap_servers, topics.input, [event(i) for i in range(1, total + 1)])
    env = worker_env(broker, topics, model_dir, standin, BATCH_SIZE="16")
    first, second = start_worker(env), start_worker(env)
    done = lambda: written(broker.bootstrap_servers, topics.output, topics.dlq)
    try:
        wait_for(lambda: done() >= 40, 90, "both workers to start", first)
        kill(first)
        at_kill = done()
        assert at_kill < total
        wait_for(
            lambda: len(read_ids(broker.bootstrap_servers, topics.output)) >= total,
            120,
            "the survivor to finish",
            second,
        )
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.terminate()
        out, _ = second.communicate(timeout=60)
    assert second.returncode == 0, out[-3000:]
    assert "partitions assigned" in out and out.count("partitions assigned") >= 2, (
        "the survivor never took over"
    )
    outputs = read_ids(broker.bootstrap_servers, topics.output)
    assert set(outputs) == set(range(1, total + 1))
    # Each rebalance leaves every member's batches in flight uncommitted (eager protocol):
    # at most FETCH_AHEAD + 1 = 3 batches of 16 per member. Two rebalances: the second
    # worker joining (the first one's batches) and the kill (both workers' batches).
    in_flight = 3 * 16
    assert sum(outputs.values()) - total <= 3 * in_flight


def test_the_worker_waits_for_a_broker_that_is_not_there_yet(
    tmp_path: Path, model_dir: Path, standin_for
) -> None:
    from demo.broker import EmbeddedBroker, create_topics
    from tests.fixtures import Topics, consume_all

    standin = standin_for(range(1, 21))
    late = EmbeddedBroker()
    names = Topics("movies.new.late", "movies.genres.late", "movies.new.dlq.late", "g-late")
    process = start_worker(worker_env(late, names, model_dir, standin))
    try:
        time.sleep(8)
        assert process.poll() is None, "the worker gave up before the broker came"
        with late:
            create_topics(late.bootstrap_servers, {names.input: 2, names.output: 1, names.dlq: 1})
            produce(late.bootstrap_servers, names.input, [event(i) for i in range(1, 21)])
            outputs = consume_all(late.bootstrap_servers, names.output, 20, timeout_s=90)
            assert sorted(o["tmdb_id"] for o in outputs) == list(range(1, 21))
            process.terminate()
            out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out[-3000:]


def test_losing_the_broker_mid_run_neither_commits_nor_crash_loops(
    tmp_path: Path, model_dir: Path, standin_for
) -> None:
    from demo.broker import EmbeddedBroker, create_topics
    from tests.fixtures import Topics, consume_all

    standin = standin_for(range(1, 201))
    names = Topics("movies.new.lost", "movies.genres.lost", "movies.new.dlq.lost", "g-lost")
    broker = EmbeddedBroker().start()
    try:
        create_topics(broker.bootstrap_servers, {names.input: 2, names.output: 1, names.dlq: 1})
        produce(broker.bootstrap_servers, names.input, [event(i) for i in range(1, 21)])
        process = start_worker(worker_env(broker, names, model_dir, standin))
        assert len(consume_all(broker.bootstrap_servers, names.output, 20, timeout_s=90)) == 20
        produce(broker.bootstrap_servers, names.input, [event(i) for i in range(21, 201)])
        broker.stop()
        time.sleep(10)
        assert process.poll() is None, "the worker died when the broker went away"
        process.terminate()
        out = finish(process, 60, "the worker did not exit on SIGTERM without a broker")
    finally:
        broker.stop()
    assert "worker started" in out
    assert out.count("worker started") == 1, "the worker restarted itself"
    assert process.returncode == 0, out[-3000:]
