"""Hostile `movies.new` values: each one is an `invalid_event` dead letter, the raw value kept.

The corpus is checked against `decode_new_movie` directly, then most of it goes through
the real worker process on the embedded broker in one run, between good events.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from demo.tmdb import StandInMovie
from poster_genres.schemas import DeadLetter, EventDecodeError, OriginalRecord, decode_new_movie
from tests.fixtures import (
    COLOURS,
    consume_all,
    event,
    poster_bytes,
    produce,
    rss_kib,
    start_worker,
    stop,
    worker_env,
)

MAX_EVENT_BYTES = 64 * 1024
KEEP_BYTES = 256 * 1024


def _deep(depth: int) -> bytes:
    return b'{"tmdb_id": 5, "title": ' + b"[" * depth + b"]" * depth + b"}"


# (kind, raw value, a fragment the dead letter's detail must contain)
CORPUS: list[tuple[str, bytes | None, str]] = [
    ("tombstone", None, "no value"),
    ("empty", b"", "not JSON"),
    ("whitespace only", b" \n\t\r ", "not JSON"),
    ("not json", b"hello, world", "not JSON"),
    ("truncated json", b'{"tmdb_id": 5', "not JSON"),
    ("json null", b"null", "JSON NoneType, not an object"),
    ("json array", b"[603]", "JSON list, not an object"),
    ("json string", b'"603"', "JSON str, not an object"),
    ("json number", b"603", "JSON int, not an object"),
    ("json bool", b"true", "JSON bool, not an object"),
    ("empty object", b"{}", "tmdb_id: Field required"),
    ("missing id", b'{"title": "Alien"}', "tmdb_id: Field required"),
    ("id null", b'{"tmdb_id": null}', "tmdb_id"),
    ("id as string", b'{"tmdb_id": "603"}', "tmdb_id: Input should be a valid integer"),
    ("id with spaces", b'{"tmdb_id": " 603 "}', "tmdb_id: Input should be a valid integer"),
    (
        "id in unicode digits",
        '{"tmdb_id": "٦٠٣"}'.encode(),
        "tmdb_id: Input should be a valid integer",
    ),
    ("id true", b'{"tmdb_id": true}', "tmdb_id: Input should be a valid integer"),
    ("id false", b'{"tmdb_id": false}', "tmdb_id: Input should be a valid integer"),
    ("id float 1.0", b'{"tmdb_id": 1.0}', "tmdb_id: Input should be a valid integer"),
    ("id float 1e3", b'{"tmdb_id": 1e3}', "tmdb_id: Input should be a valid integer"),
    ("id 1e400 (inf)", b'{"tmdb_id": 1e400}', "tmdb_id: Input should be a valid integer"),
    ("id zero", b'{"tmdb_id": 0}', "greater than 0"),
    ("id negative", b'{"tmdb_id": -603}', "greater than 0"),
    ("id 2^31", b'{"tmdb_id": 2147483648}', "less than or equal to 2147483647"),
    ("id 2^64", b'{"tmdb_id": 18446744073709551616}', "less than or equal to 2147483647"),
    ("id of 5000 digits", b'{"tmdb_id": ' + b"9" * 5000 + b"}", "not JSON"),
    ("id NaN", b'{"tmdb_id": NaN}', "NaN is not allowed"),
    ("id Infinity", b'{"tmdb_id": Infinity}', "Infinity is not allowed"),
    ("id -Infinity", b'{"tmdb_id": -Infinity}', "-Infinity is not allowed"),
    ("id as object", b'{"tmdb_id": {"id": 603}}', "tmdb_id: Input should be a valid integer"),
    ("id as array", b'{"tmdb_id": [603]}', "tmdb_id: Input should be a valid integer"),
    ("duplicate keys", b'{"tmdb_id": 603, "tmdb_id": 604}', "duplicate key 'tmdb_id'"),
    ("invalid utf-8", b'{"tmdb_id": 603, "title": "\xff\xfe"}', "not UTF-8"),
    ("latin-1 title", '{"tmdb_id": 603, "title": "Amélie"}'.encode("latin-1"), "not UTF-8"),
    ("utf-16", '{"tmdb_id": 603}'.encode("utf-16"), "not UTF-8"),
    ("byte order mark", b'\xef\xbb\xbf{"tmdb_id": 603}', "not JSON"),
    ("lone surrogate", b'{"tmdb_id": 603, "title": "\\ud800"}', "title"),
    (
        "title as object",
        b'{"tmdb_id": 603, "title": {"en": "Alien"}}',
        "title: Input should be a valid string",
    ),
    (
        "nested junk title",
        b'{"tmdb_id": 603, "title": [[{"a": [null, {}]}]]}',
        "title: Input should be a valid string",
    ),
    ("deep nesting", _deep(30_000), "not JSON"),
    (
        "huge title",
        json.dumps({"tmdb_id": 603, "title": "x" * 60_000}).encode(),
        "at most 2000 characters",
    ),
    ("empty event_id", b'{"tmdb_id": 603, "event_id": ""}', "event_id"),
    (
        "event_id number",
        b'{"tmdb_id": 603, "event_id": 17}',
        "event_id: Input should be a valid string",
    ),
    ("bad occurred_at", b'{"tmdb_id": 603, "occurred_at": "yesterday"}', "occurred_at"),
    ("naive occurred_at", b'{"tmdb_id": 603, "occurred_at": "2026-01-01T00:00:00"}', "occurred_at"),
    ("schema_version 0", b'{"tmdb_id": 603, "schema_version": 0}', "schema_version"),
    ("schema_version string", b'{"tmdb_id": 603, "schema_version": "1"}', "schema_version"),
    (
        "over the size limit",
        json.dumps({"tmdb_id": 603, "pad": "y" * 70_000}).encode(),
        "over the limit of 65536",
    ),
    (
        "10 MB value",
        b'{"tmdb_id": 603, "pad": "' + b"z" * (10 * 1024 * 1024) + b'"}',
        "over the limit of 65536",
    ),
    ("binary noise", bytes(range(256)) * 4, "not UTF-8"),
]


@pytest.mark.parametrize("kind,value,fragment", CORPUS, ids=[kind for kind, _, _ in CORPUS])
def test_each_hostile_value_is_an_invalid_event_with_a_clear_detail(
    kind: str, value: bytes | None, fragment: str
) -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode_new_movie(value, MAX_EVENT_BYTES)
    detail = str(caught.value)
    assert fragment in detail, detail
    assert len(detail) < 2000


def test_the_corpus_is_large_and_varied() -> None:
    assert len({kind for kind, _, _ in CORPUS}) == len(CORPUS) >= 30


def test_whitespace_around_a_good_event_is_still_a_good_event() -> None:
    assert decode_new_movie(b'  {"tmdb_id": 603}\n').tmdb_id == 603


def test_raw_values_are_kept_as_text_or_base64_and_truncated_beyond_256_kib() -> None:
    text = OriginalRecord.from_raw("movies.new", 0, 5, b"k", b"not json")
    assert (text.value, text.value_encoding, text.value_truncated) == ("not json", "utf-8", False)
    binary = OriginalRecord.from_raw("movies.new", 0, 6, b"k", b"\xff\xfe\x00")
    assert binary.value_encoding == "base64" and binary.raw_value() == b"\xff\xfe\x00"
    assert base64.b64decode(binary.key or "") == b"k"
    huge = b'{"pad": "' + b"z" * (10 * 1024 * 1024) + b'"}'
    kept = OriginalRecord.from_raw("movies.new", 1, 7, None, huge)
    assert kept.value_truncated and kept.value_bytes == len(huge)
    assert kept.raw_value() == huge[:KEEP_BYTES]
    # a cut through a multi-byte character falls back to base64 and still round-trips
    accented = "é".encode() * (KEEP_BYTES // 2 + 10)
    cut = OriginalRecord.from_raw("movies.new", 1, 8, None, b"x" + accented)
    assert cut.value_truncated and cut.raw_value() == (b"x" + accented)[:KEEP_BYTES]
    letter = DeadLetter(
        error="invalid_event",
        detail="d",
        attempts=0,
        failed_at="2026-01-01T00:00:00Z",
        original=kept,
    )
    assert len(letter.model_dump_json()) < 2 * 1024 * 1024  # fits the producer's max request


@pytest.mark.slow
def test_hostile_values_through_the_worker_each_end_as_one_dead_letter(
    broker, topics, model_dir, tmdb
):
    for tmdb_id in range(1, 21):
        tmdb.movies[tmdb_id] = StandInMovie(poster_bytes(COLOURS["Green"]))
    process = start_worker(worker_env(broker, topics, model_dir, tmdb))
    try:
        produce(broker.bootstrap_servers, topics.input, [event(i) for i in range(1, 11)])
        assert len(consume_all(broker.bootstrap_servers, topics.output, 10, timeout_s=90)) == 10
        before = rss_kib(process.pid)

        hostile = [(f"bad-{i}".encode(), value) for i, (_, value, _) in enumerate(CORPUS)]
        good = [event(i) for i in range(11, 21)]
        produce(broker.bootstrap_servers, topics.input, hostile[:25] + good + hostile[25:])
        letters = consume_all(broker.bootstrap_servers, topics.dlq, len(CORPUS), timeout_s=90)
        outputs = consume_all(broker.bootstrap_servers, topics.output, 20, timeout_s=30)
        time.sleep(1.0)
        after = rss_kib(process.pid)
        assert process.poll() is None, "the worker died on hostile input"
    finally:
        out = stop(process)
    assert process.returncode == 0, out[-3000:]

    assert sorted(o["tmdb_id"] for o in outputs) == list(range(1, 21))
    assert len(letters) == len(CORPUS), out[-3000:]
    by_key: dict[str, dict] = {}
    for letter in letters:
        original = letter["original"]
        key = (
            original["key"]
            if original["value_encoding"] == "utf-8"
            else base64.b64decode(original["key"]).decode()
        )
        assert key not in by_key, f"two dead letters for {key}"
        by_key[key] = letter
    for i, (kind, value, fragment) in enumerate(CORPUS):
        letter = by_key[f"bad-{i}"]
        assert letter["error"] == "invalid_event", kind
        assert fragment in letter["detail"], (kind, letter["detail"])
        original = OriginalRecord.model_validate(letter["original"])
        assert original.topic == topics.input
        if value is None:
            assert original.value is None
        else:
            assert original.value_bytes == len(value), kind
            assert original.value_truncated == (len(value) > KEEP_BYTES), kind
            assert original.raw_value() == value[:KEEP_BYTES], kind
    growth_mib = (after - before) / 1024
    assert growth_mib < 150, f"RSS grew by {growth_mib:.0f} MiB on hostile events"
    print(f"hostile events: {len(CORPUS)} kinds, RSS {before // 1024} -> {after // 1024} MiB")
