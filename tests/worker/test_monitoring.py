"""The shipped dashboard and alert rules name only metrics that the worker exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from poster_genres.posters import FetchStats
from poster_genres.worker.fetching import AsyncRunner, PosterDownloads
from poster_genres.worker.metrics import GenreAgreement, WorkerMetrics
from tests.fakes import FakeFetcher

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
METRIC = re.compile(r"\bgenre_worker_[a-z0-9_]+")


def exercised_metrics() -> WorkerMetrics:
    """Metrics with every labelled series present, as a busy worker would have them."""
    metrics = WorkerMetrics()
    metrics.acknowledged("", 1_700_000_000_000, model_version=3)
    agreement = GenreAgreement(3, ("Drama", "Comedy"), frozenset({"Drama"}), frozenset({"Comedy"}))
    metrics.agreement.count(agreement)
    metrics.acknowledged("fetch_failed", None)
    metrics.model_reloads.labels(outcome="refused").inc()
    metrics.set_lag("movies.new", 0, 5)
    metrics.circuit_open.labels(host="www.themoviedb.org:443").set(1)
    for histogram in (metrics.poster_fetch_seconds, metrics.inference_seconds, metrics.batch_size):
        histogram.observe(1)
    return metrics


def exposed_names(metrics: WorkerMetrics) -> set[str]:
    """Every sample name in the /metrics text."""
    text = metrics.render().decode()
    families = text_string_to_metric_families(text)
    return {sample.name for family in families for sample in family.samples}


def expressions(node: Any) -> Iterator[str]:
    """Every `expr` string anywhere in a dashboard or a rule file."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def alert_rules() -> dict[str, Any]:
    return yaml.safe_load((MONITORING / "prometheus-alerts.yaml").read_text())


def dashboard() -> dict[str, Any]:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


@pytest.mark.parametrize("document", [alert_rules, dashboard], ids=["alerts", "dashboard"])
def test_every_metric_in_the_expressions_is_exported(document) -> None:
    exprs = list(expressions(document()))
    assert len(exprs) >= 5
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    missing = used - exposed_names(exercised_metrics())
    assert not missing, f"not in the worker's /metrics: {sorted(missing)}"


def test_the_alert_rules_are_a_prometheus_rule_file() -> None:
    groups = alert_rules()["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {
        "GenreWorkerNoOutput",
        "GenreWorkerCircuitOpen",
        "GenreWorkerConsumerLagHigh",
        "GenreWorkerDeadLetterRateHigh",
        "GenreWorkerModelReloadFailed",
        "GenreWorkerNotServingWantedVersion",
        "GenreWorkerPageAgreementDropped",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"} and rule["annotations"]["summary"]


def test_the_worker_exports_circuits_waits_and_output_age() -> None:
    metrics = exercised_metrics()
    names = exposed_names(metrics)
    assert {
        "genre_worker_circuit_open",
        "genre_worker_circuit_wait_seconds_total",
        "genre_worker_rate_limit_wait_seconds_total",
        "genre_worker_rate_limit_waits_total",
        "genre_worker_fetch_connections_total",
        "genre_worker_last_output_timestamp_seconds",
    } <= names
    text = metrics.render().decode()
    assert 'genre_worker_outputs_produced_total{model_version="3"} 1.0' in text


def test_downloads_move_the_fetchers_totals_into_the_metrics() -> None:
    fetcher = FakeFetcher({})
    totals = {"now": FetchStats(2, {"site:443": True}, 1.5, 0.25, 3, 8)}
    fetcher.stats = lambda: totals["now"]  # type: ignore[method-assign]
    runner = AsyncRunner()
    try:
        metrics = WorkerMetrics()
        downloads = PosterDownloads(fetcher, runner, metrics)  # type: ignore[arg-type]
        downloads.observe()
        totals["now"] = FetchStats(5, {"site:443": False}, 4.0, 0.5, 4, 9)
        downloads.observe()
    finally:
        runner.close()
    value = metrics.registry.get_sample_value
    assert value("genre_worker_fetch_retries_total") == 5
    assert value("genre_worker_circuit_wait_seconds_total") == 4.0
    assert value("genre_worker_rate_limit_wait_seconds_total") == 0.5
    assert value("genre_worker_rate_limit_waits_total") == 4
    assert value("genre_worker_fetch_connections_total") == 9
    assert value("genre_worker_circuit_open", {"host": "site:443"}) == 0
