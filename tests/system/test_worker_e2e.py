"""End to end: a real broker, a TMDB-shaped HTTP server, a tiny model and the `genre-worker` process."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from demo.tmdb import StandInMovie
from tests.fixtures import (
    COLOURS,
    consume_all,
    event,
    finish,
    poster_bytes,
    produce,
    start_worker,
    stop,
    worker_env,
)

pytestmark = pytest.mark.slow


def model_scores(model_dir, images: list[bytes]) -> np.ndarray:
    version = max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    signature = tf.saved_model.load(str(model_dir / str(version))).signatures["serving_default"]
    return signature(image_bytes=tf.constant(images))["scores"].numpy()


def test_good_and_bad_events_each_end_exactly_once(broker, topics, model_dir, tmdb):
    rng = np.random.default_rng(7)
    good: dict[int, bytes] = {}
    for tmdb_id in range(100, 124):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        good[tmdb_id] = poster_bytes(colour)
    good[130] = poster_bytes(COLOURS["Red"])
    for tmdb_id, content in good.items():
        tmdb.movies[tmdb_id] = StandInMovie(
            content, title=f"Film {tmdb_id}", layout=("og", "img", "old", "site")[tmdb_id % 4]
        )
    # transient failures that recover
    tmdb.movies[140] = StandInMovie(
        poster_bytes(COLOURS["Green"]), page_failures=[429], retry_after="1"
    )
    tmdb.movies[141] = StandInMovie(poster_bytes(COLOURS["Blue"]), image_failures=[503, 503])
    good[140] = tmdb.movies[140].poster
    good[141] = tmdb.movies[141].poster
    # permanent failures
    tmdb.movies[150] = StandInMovie(None, title="No Poster")
    tmdb.movies[151] = StandInMovie(b"this is not an image", content_type="image/jpeg")
    tmdb.movies[152] = StandInMovie(
        poster_bytes(COLOURS["Red"]), poster_url="http://images.example.net/p.jpg"
    )
    noise = Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))
    big = io.BytesIO()
    noise.save(big, "PNG")
    assert len(big.getvalue()) > 20000
    tmdb.movies[153] = StandInMovie(big.getvalue(), content_type="image/png")
    tmdb.movies[154] = StandInMovie(poster_bytes(COLOURS["Red"]), image_failures=[503] * 10)
    tmdb.movies[155] = StandInMovie(b"<html>not found</html>", content_type="text/html")
    bad_values: list[tuple[bytes | None, bytes | None, str]] = [
        (b"k1", b"not json at all", "invalid_event"),
        (b"k2", json.dumps({"title": "no id"}).encode(), "invalid_event"),
        (b"k3", json.dumps({"tmdb_id": -5}).encode(), "invalid_event"),
        (b"k4", json.dumps({"tmdb_id": "12"}).encode(), "invalid_event"),
        (b"k5", b"\xff\xfe\x00garbage", "invalid_event"),
        (b"k6", json.dumps({"tmdb_id": 1, "title": "x" * 200_000}).encode(), "invalid_event"),
        (b"k7", None, "invalid_event"),
    ]
    expected_codes = {
        150: "poster_not_found",
        151: "poster_unreadable",
        152: "host_not_allowed",
        153: "poster_too_large",
        154: "fetch_failed",
        155: "poster_unreadable",
        999: "movie_not_found",
    }
    values = [event(i, title=f"Film {i}") for i in good]
    values += [event(i) for i in expected_codes]
    values += [(k, v) for k, v, _ in bad_values]
    produce(broker.bootstrap_servers, topics.input, values)

    env = worker_env(broker, topics, model_dir, tmdb, MAX_IMAGE_BYTES="20000", FETCH_ATTEMPTS="3")
    out = finish(start_worker(env, "--exit-when-idle", "4"))

    outputs = consume_all(broker.bootstrap_servers, topics.output, len(good), timeout_s=20)
    letters = consume_all(
        broker.bootstrap_servers, topics.dlq, len(expected_codes) + len(bad_values), timeout_s=20
    )
    assert "worker stopped" in out, out[-3000:]
    assert sorted(o["tmdb_id"] for o in outputs) == sorted(good), out[-3000:]
    assert len(letters) == len(expected_codes) + len(bad_values)

    ids = sorted(good)
    expected = model_scores(model_dir, [good[i] for i in ids])
    by_id = {o["tmdb_id"]: o for o in outputs}
    for row, tmdb_id in zip(expected, ids):
        output = by_id[tmdb_id]
        got = np.array([output["scores"][label] for label in ("Red", "Green", "Blue")])
        np.testing.assert_allclose(got, row, atol=1e-5)
        assert output["source_event_id"] == f"ev-{tmdb_id}"
        assert output["title"] == f"Film {tmdb_id}"
        assert output["model_version"] == 1
        assert output["poster_url"].endswith(f"/{tmdb_id}.jpg")
        assert output["genres"] == sorted(
            [label for label, s in output["scores"].items() if s >= 0.5],
            key=lambda lab: -output["scores"][lab],
        )
    assert by_id[130]["genres"] == ["Red"]
    assert by_id[140]["genres"] == ["Green"]
    assert by_id[141]["genres"] == ["Blue"]

    coded = {
        l["tmdb_id"]: l
        for l in letters
        if l["tmdb_id"] is not None and l["error"] != "invalid_event"
    }
    assert {i: coded[i]["error"] for i in coded} == expected_codes
    assert coded[154]["attempts"] >= 3
    invalid = [l for l in letters if l["error"] == "invalid_event"]
    assert len(invalid) == len(bad_values)
    raw = {
        (
            base64.b64decode(l["original"]["key"]).decode()
            if l["original"]["value_encoding"] == "base64"
            else l["original"]["key"]
        ): l
        for l in invalid
    }
    assert raw["k1"]["original"]["value"] == "not json at all"
    assert raw["k5"]["original"]["value_encoding"] == "base64"
    assert base64.b64decode(raw["k5"]["original"]["value"]) == b"\xff\xfe\x00garbage"
    assert raw["k7"]["original"]["value"] is None
    assert raw["k6"]["original"]["value_bytes"] > 200_000
    for letter in letters:
        assert letter["detail"]
        assert letter["original"]["topic"] == topics.input


def test_sigterm_finishes_the_batch_and_commits(broker, topics, model_dir, tmdb):
    for tmdb_id in range(1, 41):
        tmdb.movies[tmdb_id] = StandInMovie(poster_bytes(COLOURS["Blue"]))
    produce(broker.bootstrap_servers, topics.input, [event(i) for i in range(1, 41)])
    env = worker_env(broker, topics, model_dir, tmdb, BATCH_SIZE="4")
    process = start_worker(env)
    # wait until some outputs exist, then ask it to stop mid-stream
    first = consume_all(broker.bootstrap_servers, topics.output, 4, timeout_s=60)
    assert len(first) >= 4
    out = stop(process)
    assert process.returncode == 0, out[-3000:]
    assert "worker stopped" in out
    # a second run takes the rest; together every event ends exactly once (no batch was lost or redone)
    out2 = finish(start_worker(env, "--exit-when-idle", "3"))
    outputs = consume_all(broker.bootstrap_servers, topics.output, 40, timeout_s=20)
    ids = [o["tmdb_id"] for o in outputs]
    assert sorted(set(ids)) == list(range(1, 41)), out2[-3000:]
    assert len(ids) == 40, f"duplicates after a clean stop: {len(ids) - 40}"
