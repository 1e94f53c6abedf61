"""Wire the worker together: model, HTTP port, Kafka clients, fetcher, loop; and take it apart."""

from __future__ import annotations

import errno
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from poster_genres.common.kafka import build_producer, connect
from poster_genres.posters import PosterFetcher
from poster_genres.worker import heap
from poster_genres.worker.budget import GroupBudget, pace_on
from poster_genres.worker.classifier import configure_devices
from poster_genres.worker.clients import build_consumer
from poster_genres.worker.fetching import AsyncRunner
from poster_genres.worker.health import HealthServer
from poster_genres.worker.loop import Worker
from poster_genres.worker.membership import Membership
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.reload import ModelWatcher, describe
from poster_genres.worker.settings import WorkerSettings
from poster_genres.worker.standby import StandbyWatch, read_progress

log = logging.getLogger(__name__)

EXIT_NO_PORT = 3  # the health port could not be opened (2 is a configuration error)


class WorkerListener(ConsumerRebalanceListener):
    """Hands kafka-python's rebalance callbacks to the worker."""

    def __init__(self, worker: Worker):
        self.worker = worker

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.worker.on_partitions_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.worker.on_partitions_assigned(set(assigned))


def install_stop_handlers(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask the worker to finish the batch in hand and exit."""

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        log.info("received %s: finishing the batch in hand, then exiting", name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


async def _make_fetcher(settings: WorkerSettings) -> PosterFetcher:
    """The fetcher, made on the runner's loop, which its connections belong to."""
    return PosterFetcher(settings)


def _close_fetcher(fetcher: PosterFetcher | None, runner: AsyncRunner) -> None:
    """Close the fetcher's connections."""
    if fetcher is not None:
        runner.run(fetcher.aclose())


def _close(what: str, close: Callable[[], object]) -> None:
    """Close a Kafka client; with the broker gone that can time out: no reason to fail."""
    try:
        close()
    except KafkaError as exc:
        log.warning("closing the %s: %s (unsent records belong to uncommitted batches)", what, exc)


def _watcher(settings: WorkerSettings, metrics: WorkerMetrics) -> ModelWatcher:
    """The model watcher, its reloads, problems and wanted version kept in the metrics."""
    watcher = ModelWatcher(
        settings.model_dir,
        configure_devices(),
        settings.model_poll_s,
        on_reload=lambda outcome: metrics.model_reloads.labels(outcome=outcome).inc(),
        pinned=settings.model_version,
        on_problem=lambda problem: metrics.model_pointer_errors.inc(),
    )
    metrics.model_wanted_version.set_function(lambda: float(watcher.wanted or 0))
    if settings.model_version is not None:
        log.info("pinned to model version %d (MODEL_VERSION)", settings.model_version)
    return watcher


def _serve_health(
    settings: WorkerSettings,
    metrics: WorkerMetrics,
    ready: Callable[[], tuple[bool, str]],
    model: Callable[[], dict[str, Any] | None],
) -> HealthServer | None:
    """Start the health, readiness, metrics and model port; None (logged) if it cannot be."""
    try:
        health = HealthServer(settings.http_host, settings.http_port, metrics, ready, model).start()
    except OSError as exc:
        log.error("%s", port_refused(settings, exc))
        return None
    log.info("health and metrics on http://%s:%d", settings.http_host, health.port)
    return health


def _join(
    consumer: KafkaConsumer, worker: Worker, fetcher: PosterFetcher, runner: AsyncRunner
) -> None:
    """Subscribe to the input topic, pacing at the group's share of the rate limits, and
    with a watch that rejoins while the group's input waits unconsumed."""
    settings, metrics = worker.settings, worker.metrics
    topic, listener = settings.input_topic, WorkerListener(worker)

    def rejoin() -> None:
        consumer.unsubscribe()  # leaves the group
        consumer.subscribe([topic], listener=listener)  # the next poll joins it again

    worker.group = Membership(
        GroupBudget(topic, consumer, metrics, pace_on(runner, fetcher.pacer)),
        StandbyWatch(
            settings.standby_stall_s, lambda: read_progress(consumer, topic), rejoin, metrics
        ),
    )
    consumer.subscribe([topic], listener=listener)


def port_refused(settings: WorkerSettings, exc: OSError) -> str:
    """One line saying why the health port could not be opened, and what to set instead."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"HTTP_PORT {settings.http_port} is already in use on {settings.http_host} "
            "(another worker on this host?): give each process its own HTTP_PORT, or set "
            "HTTP_PORT=0 for any free port (the chosen one is logged)"
        )
    where = f"{settings.http_host}:{settings.http_port}"
    return f"cannot serve health and metrics on HTTP_HOST:HTTP_PORT {where}: {exc.strerror or exc}"


def _connect(
    settings: WorkerSettings, stopping: threading.Event
) -> tuple[KafkaConsumer | None, KafkaProducer | None]:
    """The consumer and the producer, each retried until connected or stopped (then None)."""
    consumer = connect(lambda: build_consumer(settings), "consumer", stopping.is_set)
    if consumer is None:
        return None, None
    producer = connect(
        lambda: build_producer(settings, settings.client_id), "producer", stopping.is_set
    )
    return consumer, producer


def _ready(worker: Worker | None) -> tuple[bool, str]:
    """Readiness: the worker's own answer once it exists."""
    return worker.ready() if worker is not None else (False, "starting")


def run(
    settings: WorkerSettings,
    exit_when_idle: float | None = None,
    wait_for_model: float = float("inf"),
) -> int:
    """Run until SIGTERM (or idle); return the process exit code."""
    started = time.monotonic()
    stopping = threading.Event()
    worker: Worker | None = None

    def stop() -> None:
        stopping.set()
        if worker is not None:
            worker.stop()

    install_stop_handlers(stop)
    metrics = WorkerMetrics()
    health = _serve_health(settings, metrics, lambda: _ready(worker), lambda: describe(models))
    if health is None:
        return EXIT_NO_PORT
    models = _watcher(settings, metrics)
    runner = AsyncRunner(settings.fetch_event_loop)
    consumer = producer = fetcher = None
    try:
        if models.load_initial(wait_for_model, should_stop=stopping.is_set) is None:
            log.error("no servable model version in %s", settings.model_dir)
            return 0 if stopping.is_set() else 1
        metrics.model_version.set(models.current.version)  # type: ignore[union-attr]
        consumer, producer = _connect(settings, stopping)
        if consumer is None or producer is None:
            return 0
        fetcher = runner.run(_make_fetcher(settings))
        worker = Worker(settings, consumer, producer, fetcher, runner, models, metrics)
        if stopping.is_set():
            worker.stop()
        _join(consumer, worker, fetcher, runner)
        _log_start(settings, time.monotonic() - started)
        heap.freeze("started")
        worker.run(exit_when_idle=exit_when_idle)
        return worker.exit_code
    finally:
        _close("consumer", lambda: consumer and consumer.close(autocommit=False, timeout_ms=10_000))
        _close("producer", lambda: producer and producer.close(timeout=10))
        _close_fetcher(fetcher, runner)
        runner.close()
        models.close()
        health.stop()
        heap.thaw()


def _log_start(settings: WorkerSettings, took_s: float) -> None:
    log.info(
        "worker started in %.1f s: %s -> %s (dead letters: %s), group %s, batches of %d",
        took_s,
        settings.input_topic,
        settings.output_topic,
        settings.dlq_topic,
        settings.group_id,
        settings.batch_size,
    )
