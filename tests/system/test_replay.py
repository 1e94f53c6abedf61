"""Dead letters carry their origin in Kafka headers and can be replayed once the cause is gone."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from demo.tmdb import StandInMovie
from poster_genres.schemas import DeadLetter, ErrorCode, OriginalRecord
from poster_genres.worker.replay import Selection, original_record, parse_time
from tests.fixtures import (
    COLOURS,
    consume_all,
    event,
    poster_bytes,
    produce,
    start_worker,
    worker_env,
)

IDS = list(range(500, 512))


def letter(
    code: str = "fetch_failed", value: bytes | None = b'{"tmdb_id": 5}', **original: object
) -> DeadLetter:
    raw = OriginalRecord.from_raw("movies.new", 1, 7, b"5", value, 1_700_000_000_000)
    return DeadLetter(
        error=code,
        detail="x",
        attempts=2,
        failed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        original=raw.model_copy(update=original),
    )


def test_original_record_gives_back_key_and_value_or_why_not() -> None:
    assert original_record(letter()) == (b"5", b'{"tmdb_id": 5}')
    binary = letter(value=b"\xff\x00")
    assert binary.original.value_encoding == "base64"
    assert original_record(binary) == (b"5", b"\xff\x00")
    assert original_record(letter(value_truncated=True)) == "value_truncated"
    assert original_record(letter(value=None)) == "no_value"
    assert original_record(letter(value=None, value_bytes=300_000)) == "value_dropped"
    assert original_record(letter(value_bytes=300_000)) == "value_truncated"


def test_selection_by_code_and_time() -> None:
    dead = letter()
    assert Selection().matches(dead, None)
    assert Selection(frozenset({"fetch_failed"})).matches(dead, None)
    assert not Selection(frozenset({"invalid_event"})).matches(dead, None)
    assert Selection(since=parse_time("2026-01-02T03:00:00Z")).matches(dead, None)
    assert not Selection(since=parse_time("2026-01-02T04:00:00")).matches(dead, None)
    assert not Selection(until=parse_time("2026-01-02")).matches(dead, None)
    by_record = Selection(until=parse_time("2024-01-01"), time_of="record")
    assert by_record.matches(dead, 1_700_000_000_000)  # 2023-11-14


def consume_records(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    """The raw records of `topic` (headers included), until `expected` arrived."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    partitions = sorted(consumer.partitions_for_topic(topic) or {0})
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
    finally:
        consumer.close()
    return records


def replay(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "poster_genres.worker", "replay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out[-3000:]
    return out


@pytest.mark.slow
def test_dead_letters_keep_the_input_headers_and_name_their_origin(broker, topics, model_dir, tmdb):
    env = worker_env(broker, topics, model_dir, tmdb)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    producer.send(
        topics.input,
        key=b"k1",
        value=b"not json",
        partition=1,
        headers=[("traceparent", b"00-abc-01"), ("source", b"crawler")],
    )
    producer.flush()
    producer.close()
    process = start_worker(env)
    try:
        [dead] = consume_records(broker.bootstrap_servers, topics.dlq, 1)
    finally:
        stop(process)
    headers = dict(dead.headers)
    assert headers["traceparent"] == b"00-abc-01" and headers["source"] == b"crawler"
    assert headers["dlq.error.code"] == b"invalid_event"
    assert headers["dlq.original.topic"] == topics.input.encode()
    assert headers["dlq.original.partition"] == b"1"
    assert headers["dlq.original.offset"] == b"0"
    assert headers["dlq.attempts"] == b"0"
    assert [name for name, _ in dead.headers][:2] == ["traceparent", "source"]


@pytest.mark.slow
def test_an_outage_fills_the_dlq_and_a_replay_ends_every_event_as_an_output_once(
    broker, topics, model_dir, tmdb
):
    mode = {"down": True}

    def page(h: BaseHTTPRequestHandler) -> None:
        if mode["down"]:
            h.reply(503, b"down for maintenance", "text/plain")  # type: ignore[attr-defined]
        else:
            h.movie_page(int(h.path.split("/")[2].split("?")[0]), False)  # type: ignore[attr-defined]

    for i in IDS:
        tmdb.movies[i] = StandInMovie(poster_bytes(COLOURS["Red"]), title=f"Film {i}")
        tmdb.routes[f"/movie/{i}"] = page
    env = worker_env(
        broker,
        topics,
        model_dir,
        tmdb,
        FETCH_ATTEMPTS="2",
        BREAKER_THRESHOLD="2",
        BREAKER_COOLDOWN_S="0.2",
        BREAKER_MAX_COOLDOWN_S="0.5",
        MAX_OUTAGE_WAIT_S="1",
        FETCH_DEADLINE_S="5",
    )
    process = start_worker(env)
    try:
        produce(broker.bootstrap_servers, topics.input, [event(i) for i in IDS] + [(b"x", b"[]")])
        letters = consume_all(broker.bootstrap_servers, topics.dlq, len(IDS) + 1, timeout_s=90)
        codes = sorted(d["error"] for d in letters)
        assert codes == ["fetch_failed"] * len(IDS) + ["invalid_event"], codes
        mode["down"] = False
        group = f"replay-{uuid.uuid4().hex[:8]}"
        dry = replay(env, "--code", ErrorCode.FETCH_FAILED, "--group", group, "--dry-run")
        assert f"would replay: read={len(IDS) + 1} matched={len(IDS)} replayed={len(IDS)}" in dry
        first = replay(env, "--code", "fetch_failed", "--group", group)
        expected = f"read={len(IDS) + 1} matched={len(IDS)} replayed={len(IDS)} skipped=0"
        assert f"replayed: {expected}" in first
        outputs = consume_all(broker.bootstrap_servers, topics.output, len(IDS), timeout_s=60)
        assert sorted(o["tmdb_id"] for o in outputs) == IDS
        assert sorted(o["source_event_id"] for o in outputs) == sorted(f"ev-{i}" for i in IDS)
        second = replay(env, "--code", "fetch_failed", "--group", group)
        assert "replayed: read=0 matched=0 replayed=0" in second
        time.sleep(3)
        again = consume_all(broker.bootstrap_servers, topics.output, len(IDS) + 1, timeout_s=3)
        assert len(again) == len(IDS), "a second replay produced nothing"
        letters = consume_all(broker.bootstrap_servers, topics.dlq, len(IDS) + 2, timeout_s=2)
        assert len(letters) == len(IDS) + 1
    finally:
        stop(process)
