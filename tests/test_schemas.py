"""Event validation and the published JSON Schema."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from schemas import DeadLetter, EventDecodeError, MovieGenres, NewMovie, OriginalRecord, decode_new_movie


def test_a_minimal_event_and_a_full_one():
    assert decode_new_movie(b'{"tmdb_id": 603}') == NewMovie(tmdb_id=603)
    event = decode_new_movie(
        json.dumps(
            {"tmdb_id": 603, "event_id": "e1", "title": "The Matrix", "occurred_at": "2026-11-28T09:30:00Z",
             "schema_version": 1, "producer_note": "ignored"}
        ).encode()
    )
    assert event.title == "The Matrix" and event.event_id == "e1" and event.occurred_at.year == 2026


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"[603]", "not an object"),
        (b'{"tmdb_id": 0}', "greater than 0"),
        (b'{"tmdb_id": -1}', "greater than 0"),
        (b'{"tmdb_id": "603"}', "valid integer"),
        (b'{"tmdb_id": 603.0}', "valid integer"),
        (b'{"tmdb_id": true}', "valid integer"),
        (b'{"tmdb_id": 99999999999}', "less than or equal"),
        (b'{"tmdb_id": NaN}', "NaN"),
        (b'{"tmdb_id": 1, "tmdb_id": 2}', "duplicate key"),
        (b'{"tmdb_id": 1, "occurred_at": "yesterday"}', "occurred_at"),
        (b'{"tmdb_id": 1, "occurred_at": "2026-11-28T09:30:00"}', "timezone"),
        (b"\xff\xfe", "not UTF-8"),
        (None, "tombstone"),
        (b"[" * 60_000, "not JSON"),
    ],
)
def test_bad_events_are_refused_with_a_reason(raw, reason):
    with pytest.raises(EventDecodeError, match=reason):
        decode_new_movie(raw)


def test_oversized_values_are_refused_before_parsing():
    with pytest.raises(EventDecodeError, match="over the limit"):
        decode_new_movie(b'{"tmdb_id": 1, "title": "' + b"x" * 100 + b'"}', max_bytes=64)


def test_original_record_keeps_text_or_base64_and_truncates_huge_values():
    text = OriginalRecord.from_raw("t", 0, 5, b"k", b"hello")
    assert (text.value, text.value_encoding, text.raw_value()) == ("hello", "utf-8", b"hello")
    binary = OriginalRecord.from_raw("t", 0, 5, b"k", b"\xff\x00")
    assert binary.value_encoding == "base64" and binary.raw_value() == b"\xff\x00"
    assert base64.b64decode(binary.key) == b"k"
    huge = OriginalRecord.from_raw("t", 0, 5, None, b"a" * 1000, keep_bytes=100)
    assert huge.value_truncated and huge.value_bytes == 1000 and len(huge.value) == 100


def test_python_m_schemas_prints_every_topic():
    out = subprocess.run([sys.executable, "-m", "schemas"], capture_output=True, text=True, check=True).stdout
    schemas = json.loads(out)
    assert set(schemas) == {"movies.new", "movies.genres", "movies.new.dlq"}
    assert schemas["movies.new"]["required"] == ["tmdb_id"]
    assert "description" in schemas["movies.genres"]["properties"]["genres"]
    assert set(MovieGenres.model_fields) <= set(schemas["movies.genres"]["properties"])
    assert set(DeadLetter.model_fields) <= set(schemas["movies.new.dlq"]["properties"])
