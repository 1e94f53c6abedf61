"""The health server answers real HTTP requests on loopback."""

from __future__ import annotations

import http.client
import logging

import pytest

from poster_genres.worker.health import HealthServer
from poster_genres.worker.metrics import WorkerMetrics


def get(port: int, path: str) -> tuple[int, str, str]:
    """GET `path` on loopback and return status, content type and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read().decode()
    finally:
        conn.close()


class Readiness:
    """A readiness flag the test flips."""

    def __init__(self) -> None:
        self.ok = False
        self.reason = "model not loaded"

    def __call__(self) -> tuple[bool, str]:
        return self.ok, self.reason


@pytest.fixture()
def metrics() -> WorkerMetrics:
    return WorkerMetrics()


def test_healthz_and_real_port(metrics: WorkerMetrics) -> None:
    with HealthServer("127.0.0.1", 0, metrics, lambda: (True, "ready")) as server:
        assert server.port > 0
        assert get(server.port, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")


def test_readiness_goes_from_503_to_200(metrics: WorkerMetrics) -> None:
    ready = Readiness()
    with HealthServer("127.0.0.1", 0, metrics, ready) as server:
        status, _, body = get(server.port, "/readyz")
        assert (status, body) == (503, "model not loaded\n")
        ready.ok, ready.reason = True, "model 3 loaded, partitions assigned"
        status, _, body = get(server.port, "/readyz")
        assert (status, body) == (200, "model 3 loaded, partitions assigned\n")


def test_readiness_check_that_raises_is_503(metrics: WorkerMetrics) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("consumer closed")

    with HealthServer("127.0.0.1", 0, metrics, broken) as server:
        status, _, body = get(server.port, "/readyz")
    assert status == 503
    assert "consumer closed" in body


def test_metrics_exposition(metrics: WorkerMetrics) -> None:
    metrics.events_consumed.inc(3)
    metrics.acknowledged("", None, model_version=3)
    metrics.acknowledged("", None, model_version=3)
    metrics.dead_letters.labels(code="poster_not_found").inc()
    metrics.model_version.set(7)
    metrics.set_lag("movies.new", 4, 12)
    metrics.batch_size.observe(3)
    with HealthServer("127.0.0.1", 0, metrics, lambda: (True, "ready")) as server:
        status, ctype, body = get(server.port, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=")
    assert "genre_worker_events_consumed_total 3.0" in body
    assert 'genre_worker_outputs_produced_total{model_version="3"} 2.0' in body
    assert "genre_worker_last_output_timestamp_seconds 1." in body
    assert 'genre_worker_dead_letters_total{code="poster_not_found"} 1.0' in body
    assert "genre_worker_model_version 7.0" in body
    assert 'genre_worker_consumer_lag{partition="4",topic="movies.new"} 12.0' in body
    assert "genre_worker_batch_size_count 1.0" in body


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = WorkerMetrics(), WorkerMetrics()
    first.events_consumed.inc()
    assert b"genre_worker_events_consumed_total 1.0" in first.render()
    assert b"genre_worker_events_consumed_total 0.0" in second.render()


def test_forget_partition_drops_its_lag(metrics: WorkerMetrics) -> None:
    metrics.set_lag("movies.new", 1, 5)
    metrics.forget_partition("movies.new", 1)
    metrics.forget_partition("movies.new", 1)
    assert b'partition="1"' not in metrics.render()


def test_unknown_path_is_404(metrics: WorkerMetrics) -> None:
    with HealthServer("127.0.0.1", 0, metrics, lambda: (True, "ready")) as server:
        assert get(server.port, "/nope")[0] == 404
        assert get(server.port, "/")[0] == 404


def test_stop_closes_the_port(metrics: WorkerMetrics) -> None:
    server = HealthServer("127.0.0.1", 0, metrics, lambda: (True, "ready")).start()
    port = server.port
    assert get(port, "/healthz")[0] == 200
    server.stop()
    server.stop()
    with pytest.raises(OSError):
        get(port, "/healthz")


def test_requests_log_at_debug_not_stderr(
    metrics: WorkerMetrics, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="poster_genres.worker.health")
    with HealthServer("127.0.0.1", 0, metrics, lambda: (True, "ready")) as server:
        get(server.port, "/healthz")
    assert capfd.readouterr().err == ""
    access = [r for r in caplog.records if "GET /healthz" in r.getMessage()]
    assert access and all(r.levelno == logging.DEBUG for r in access)


def test_model_says_what_the_served_version_means(metrics: WorkerMetrics, tmp_path) -> None:
    import json

    from poster_genres.worker.reload import ModelWatcher, describe
    from tests.fixtures import LABELS, build_tiny_model

    version = build_tiny_model(tmp_path)
    meta = json.loads((version / "metadata.json").read_text())
    per_genre = [
        {"genre": g, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 3} for g in LABELS
    ]
    meta["metrics"] = {"split": "test", "macro_f1": 0.5, "per_genre": per_genre}
    meta["training_data"] = {"excluded_genres": ["IMAX"]}
    (version / "metadata.json").write_text(json.dumps(meta))
    watcher = ModelWatcher(tmp_path, poll_s=60)
    try:
        with HealthServer(
            "127.0.0.1", 0, metrics, lambda: (True, "ready"), model=lambda: describe(watcher)
        ) as server:
            status, ctype, body = get(server.port, "/model")
            assert (status, ctype, json.loads(body)) == (
                503,
                "application/json",
                {"error": "no model loaded"},
            )
            watcher.load_initial()
            status, ctype, body = get(server.port, "/model")
    finally:
        watcher.close()
    assert (status, ctype) == (200, "application/json")
    info = json.loads(body)
    assert info["version"] == 1 and info["labels"] == LABELS and info["thresholds"] == [0.5] * 3
    assert info["per_genre"] == per_genre and info["metrics"] == {"split": "test", "macro_f1": 0.5}
    assert info["feature_extractor"] == "tests/tiny-mean-colour" and info["created_at"]
    assert info["extra_feature_extractor"] is None  # this version was made with one extractor
    assert info["excluded_genres"] == ["IMAX"] and info["pinned"] is False
