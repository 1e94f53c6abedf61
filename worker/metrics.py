"""Prometheus metrics of the worker, in a registry of their own."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

PREFIX = "genre_worker_"
CONTENT_TYPE = CONTENT_TYPE_LATEST

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
FETCH_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
END_TO_END_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass(frozen=True)
class GenreAgreement:
    """An output's genres next to those its page lists, both within the model's labels."""

    model_version: int
    labels: tuple[str, ...]  # every label of the model
    predicted: frozenset[str]  # the output's genres
    page: frozenset[str]  # the page's genres that are labels of the model (not empty)


class AgreementMetrics:
    """The model's genres against the page's: per model version and genre, the true and
    false positives and false negatives, so that precision and recall follow as ratios."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.compared = Counter(
            PREFIX + "page_genres_compared",
            "Outputs whose page lists a genre the model has, compared with the page.",
            ["model_version"],
            registry=registry,
        )
        labels = ["model_version", "genre"]
        self.true_positives = Counter(
            PREFIX + "page_genre_true_positives",
            "Compared outputs with this genre that the page lists too.",
            labels,
            registry=registry,
        )
        self.false_positives = Counter(
            PREFIX + "page_genre_false_positives",
            "Compared outputs with this genre that the page does not list.",
            labels,
            registry=registry,
        )
        self.false_negatives = Counter(
            PREFIX + "page_genre_false_negatives",
            "Compared outputs without this genre that the page lists.",
            labels,
            registry=registry,
        )
        self._versions: set[int] = set()

    def count(self, agreement: GenreAgreement) -> None:
        """Count one output's true and false positives and false negatives against its page."""
        version = str(agreement.model_version)
        counters = (self.true_positives, self.false_positives, self.false_negatives)
        if agreement.model_version not in self._versions:
            # every genre's series from the first comparison on, so that ratios have them
            self._versions.add(agreement.model_version)
            for genre in agreement.labels:
                for counter in counters:
                    counter.labels(model_version=version, genre=genre)
        self.compared.labels(model_version=version).inc()
        predicted, page = agreement.predicted, agreement.page
        for counter, genres in zip(
            counters, (predicted & page, predicted - page, page - predicted)
        ):
            for genre in genres:
                counter.labels(model_version=version, genre=genre).inc()


class GroupMetrics:
    """This member's place in its consumer group: its share of the rate limits, standby."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.rate_budget_share = Gauge(
            PREFIX + "rate_budget_share",
            "This member's share of SITE_RATE_LIMIT and IMAGE_RATE_LIMIT: its partitions of "
            "the input topic / all of them (0: a standby).",
            registry=r,
        )
        self.standby_stalled = Gauge(
            PREFIX + "standby_stalled",
            "1 while this member has no partitions and the group's input waits with no commit "
            "for STANDBY_STALL_S, else 0.",
            registry=r,
        )
        self.rejoins = Counter(
            PREFIX + "group_rejoins",
            "Times this member left and rejoined its group because it stood by while the "
            "input waited unconsumed.",
            registry=r,
        )


class WorkerMetrics:
    """The worker's counters, gauges and histograms; the worker updates the attributes directly."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            PREFIX + "events_consumed", "Input records consumed from the input topic.", registry=r
        )
        self.outputs_produced = Counter(
            PREFIX + "outputs_produced",
            "Genre events acknowledged by the broker on the output topic, by serving model.",
            ["model_version"],
            registry=r,
        )
        self.dead_letters = Counter(
            PREFIX + "dead_letters",
            "Dead letters acknowledged by the broker, by error code.",
            ["code"],
            registry=r,
        )
        self.batches = Counter(
            PREFIX + "batches", "Batches whose every result the broker acknowledged.", registry=r
        )
        self.commits = Counter(
            PREFIX + "commits", "Offset commits the broker accepted.", registry=r
        )
        self.fetch_retries = Counter(
            PREFIX + "fetch_retries",
            "Poster fetch attempts retried after a transient failure.",
            registry=r,
        )
        self.model_reloads = Counter(
            PREFIX + "model_reloads",
            "Attempts to load a newer model version, by outcome.",
            ["outcome"],
            registry=r,
        )
        self._add_fetching_metrics()
        self.agreement = AgreementMetrics(r)
        self._add_histograms_and_gauges()
        self.group = GroupMetrics(r)

    def _add_fetching_metrics(self) -> None:
        """What the poster fetcher reports: circuits and waits (read from `PosterFetcher.stats`)."""
        r = self.registry
        self.circuit_wait_seconds = Counter(
            PREFIX + "circuit_wait_seconds",
            "Seconds poster requests spent waiting for hosts whose circuit was open.",
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            PREFIX + "rate_limit_wait_seconds",
            "Seconds poster requests spent waiting for a host's rate limit.",
            registry=r,
        )
        self.rate_limit_waits = Counter(
            PREFIX + "rate_limit_waits",
            "Poster requests that had to wait for a host's rate limit.",
            registry=r,
        )
        self.fetch_connections = Counter(
            PREFIX + "fetch_connections",
            "TCP connections the poster fetcher opened; kept connections carry a steady load, "
            "so this grows with the pool's size, not with the posters.",
            registry=r,
        )
        self.circuit_open = Gauge(
            PREFIX + "circuit_open",
            "1 while requests to a host wait for its circuit breaker's probe, else 0.",
            ["host"],
            registry=r,
        )

    def _add_histograms_and_gauges(self) -> None:
        """The histograms and gauges (apart from `__init__` to keep each part short)."""
        self._add_histograms()
        r = self.registry
        self.model_version = Gauge(
            PREFIX + "model_version", "Version number of the model being served.", registry=r
        )
        self.last_output_time = Gauge(
            PREFIX + "last_output_timestamp_seconds",
            "Unix time of the newest output the broker acknowledged (age: time() - this).",
            registry=r,
        )
        self.model_wanted_version = Gauge(
            PREFIX + "model_wanted_version",
            "Version MODEL_VERSION, serving.json or the highest folder asks for (0: none).",
            registry=r,
        )
        self.model_pointer_errors = Counter(
            PREFIX + "model_pointer_errors",
            "Times the version that MODEL_VERSION or serving.json names could not be served "
            "(missing, refused, unreadable pointer), once per occurrence.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            PREFIX + "consumer_lag",
            "Records between the committed offset and the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )

    def _add_histograms(self) -> None:
        """Batch sizes and where the time goes."""
        r = self.registry
        self.batch_size = Histogram(
            PREFIX + "batch_size",
            "Records per consumed batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.poster_fetch_seconds = Histogram(
            PREFIX + "poster_fetch_seconds",
            "Time to find and download one poster, retries included.",
            buckets=FETCH_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            PREFIX + "inference_seconds",
            "Time of one classification call for a whole batch.",
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            PREFIX + "end_to_end_seconds",
            "From the input record's timestamp to its output being acknowledged.",
            buckets=END_TO_END_BUCKETS,
            registry=r,
        )

    def consumed(self, records: int) -> None:
        """Count one polled batch of `records` input records."""
        self.events_consumed.inc(records)
        self.batch_size.observe(records)

    def acknowledged(
        self,
        code: str,
        input_timestamp_ms: int | None,
        model_version: int | None = None,
        agreement: GenreAgreement | None = None,
    ) -> None:
        """Count one result the broker acknowledged: an output (`code` empty) or a dead letter."""
        if code:
            self.dead_letters.labels(code=code).inc()
        else:
            version = "" if model_version is None else str(model_version)
            self.outputs_produced.labels(model_version=version).inc()
            self.last_output_time.set(time.time())
            if agreement is not None:
                self.agreement.count(agreement)
        if input_timestamp_ms is not None and input_timestamp_ms > 0:
            self.end_to_end_seconds.observe(max(0.0, time.time() - input_timestamp_ms / 1000))

    def summary(self) -> str:
        """The counters of the exit log line."""
        letters = {labels["code"]: n for labels, n in _totals(self.dead_letters)}
        codes = ", ".join(f"{code}={n}" for code, n in sorted(letters.items())) or "none"
        return (
            f"consumed={_total(self.events_consumed)} produced={_total(self.outputs_produced)} "
            f"dead_letters={sum(letters.values())} ({codes}) "
            f"batches={_total(self.batches)} commits={_total(self.commits)}"
        )

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Record the lag of one partition."""
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this worker no longer owns."""
        try:
            self.consumer_lag.remove(topic, str(partition))
        except KeyError:
            log.debug("no lag series for %s[%d]", topic, partition)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)


def _totals(counter: Counter) -> list[tuple[dict[str, str], int]]:
    """(labels, count) of each series of a counter."""
    return [
        (sample.labels, int(sample.value))
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    ]


def _total(counter: Counter) -> int:
    """The sum over every series of a counter."""
    return sum(n for _, n in _totals(counter))
