"""Prometheus metrics of the worker, in a registry of their own."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

PREFIX = "genre_worker_"
CONTENT_TYPE = CONTENT_TYPE_LATEST

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
FETCH_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
END_TO_END_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


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
            "Genre events acknowledged by the broker on the output topic.",
            registry=r,
        )
        self.dead_letters = Counter(
            PREFIX + "dead_letters",
            "Dead letters acknowledged by the broker, by error code.",
            ["code"],
            registry=r,
        )
        self._add_histograms(r)
        self.model_version = Gauge(
            PREFIX + "model_version", "Version number of the model being served.", registry=r
        )
        self.model_reloads = Counter(
            PREFIX + "model_reloads",
            "Attempts to load a newer model version, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            PREFIX + "consumer_lag",
            "Records between the committed offset and the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.fetch_retries = Counter(
            PREFIX + "fetch_retries",
            "Poster fetch attempts retried after a transient failure.",
            registry=r,
        )

    def _add_histograms(self, r: CollectorRegistry) -> None:
        """Batch sizes and where the time goes."""
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
