"""The consume -> fetch -> classify -> produce -> commit loop, in the order that keeps it safe.

Batch N+1 is polled and its posters start downloading before batch N is classified,
so network I/O and inference overlap; while batch N's posters are still downloading, up
to `FETCH_AHEAD` batches are polled and started behind it. Offsets of a batch are
committed only after the broker acknowledged every output and dead letter of that batch;
batches finish in poll order, so a commit never passes a record whose result is not
stored. The stages themselves live in `jobs`, `fetching`, `inference`, `results`,
`publisher` and `partitions`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from poster_genres.posters import PosterFetcher
from poster_genres.worker import heap
from poster_genres.worker.classifier import Classifier
from poster_genres.worker.fetching import AsyncRunner, PosterDownloads
from poster_genres.worker.inference import DeviceFailed, classify_batch
from poster_genres.worker.jobs import Batch, decode_batch
from poster_genres.worker.membership import Membership
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.partitions import Assignments, commit_owned, drained, keep_alive, read_lag
from poster_genres.worker.publisher import Outcome, Publisher
from poster_genres.worker.reload import ModelWatcher
from poster_genres.worker.results import Result, ResultBuilder
from poster_genres.worker.settings import WorkerSettings

log = logging.getLogger(__name__)

LAG_CHECK_S = 5.0
IDLE_POLL_MS = 500  # poll timeout while no batch is in flight


class Worker:
    """Turns every input record into exactly one output or one dead letter (at least once)."""

    def __init__(
        self,
        settings: WorkerSettings,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        fetcher: PosterFetcher,
        runner: AsyncRunner,
        models: ModelWatcher,
        metrics: WorkerMetrics | None = None,
        group: Membership | None = None,
    ):
        self.settings = settings
        self.group = group or Membership()  # rate budget share, standby watch
        self.consumer = consumer
        self.models = models
        self.metrics = metrics or WorkerMetrics()
        self._stop = threading.Event()
        self.assignments = Assignments()
        self.downloads = PosterDownloads(fetcher, runner, self.metrics)
        self.results = ResultBuilder(
            settings.output_topic, settings.dlq_topic, settings.max_dead_letter_bytes
        )
        self.publisher = Publisher(
            producer, self.metrics, self._stop, self._keep_alive, shrink=self.results.refused
        )
        self.exit_code = 0  # 1 once a batch could not be scored or its results not stored
        self._in_flight: deque[Batch] = deque()  # polled, posters downloading, oldest first
        self._idle_since = time.monotonic()
        self._next_lag_check = 0.0

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit and return (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once `stop` was called."""
        return self._stop.is_set()

    def ready(self) -> tuple[bool, str]:
        """Readiness (`readiness`), safe to ask from the HTTP thread."""
        return readiness(self.consumer, self.models, self.settings.group_id, self.group.stalled)

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Note a revocation (kafka-python's IO thread: no blocking call may be made here).

        The batch in hand is finished by the Kafka thread; if its commit is refused the
        partitions' new owner processes those records again.
        """
        self.assignments.revoked(revoked)
        log.info("partitions revoked: %s%s", _names(revoked), self._regrouped())
        for tp in revoked:
            self.metrics.forget_partition(tp.topic, tp.partition)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Note an assignment."""
        self.assignments.assigned(assigned)
        count = self.assignments.count
        share = self._regrouped()
        log.info("partitions assigned: %s (assignment %d)%s", _names(assigned), count, share)

    def _regrouped(self) -> str:
        return self.group.regrouped(self.assignments.held)

    # -- the loop ------------------------------------------------------------------------

    def run(self, exit_when_idle: float | None = None) -> WorkerMetrics:
        """Poll, start fetching, finish the previous batch; until stopped (or idle, if asked)."""
        self._idle_since = time.monotonic()
        while not self.stopping:
            self._swap_model()
            batch = self._poll()
            if batch is not None:
                self._in_flight.append(batch)
            due = finish_due(self._in_flight, batch, self.settings.fetch_ahead, self.downloads)
            if due and not self._finish(self._in_flight.popleft()):
                self._in_flight.clear()  # stopped with results unacknowledged: finish nothing more
                break
            self._check_lag()
            if exit_when_idle is not None and self._idle_for(exit_when_idle, batch):
                break
        while self._in_flight:  # stopping: what was polled is fetched, finish it
            if not self._finish(self._in_flight.popleft()):
                break
        log.info("worker stopped: %s", self.metrics.summary())
        return self.metrics

    def _swap_model(self) -> None:
        """Serve a newer model version if one finished loading."""
        classifier = self.models.poll()
        if classifier is not None:
            self.metrics.model_version.set(classifier.version)
            heap.freeze(f"serving model version {classifier.version}")  # frees the old one

    def _poll(self) -> Batch | None:
        """Poll one batch, validate it and start downloading its posters."""
        timeout_ms = self.settings.batch_linger_ms if self._in_flight else IDLE_POLL_MS
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.settings.batch_size)
        records: list[ConsumerRecord] = [r for part in polled.values() for r in part]
        if not records:
            return None
        batch = decode_batch(records, self.settings.max_event_bytes)
        batch.generations = self.assignments.generations(batch.offsets)
        self.downloads.start(batch)
        self.metrics.consumed(len(records))
        return batch

    def _finish(self, batch: Batch) -> bool:
        """Collect posters, classify, publish, commit; False if the results were not all stored."""
        started = time.monotonic()
        self.downloads.collect(batch, self._keep_alive)
        fetched = time.monotonic()
        classifier = self.models.current
        if not self._classify(batch, classifier):
            return False
        classified = time.monotonic()
        if not self._publish([self.results.build(job, classifier) for job in batch.jobs]):
            return False
        published = time.monotonic()
        offsets = self.assignments.current(batch.offsets, batch.generations)
        if offsets and commit_owned(self.consumer, offsets):
            self.metrics.commits.inc()
        self.metrics.batches.inc()
        _log_batch(batch, fetched - started, classified - fetched, published - classified)
        return True

    def _classify(self, batch: Batch, classifier: Classifier | None) -> bool:
        """Score the batch; False (and exit code 1) if the device cannot."""
        try:
            classify_batch(batch, classifier, self.metrics)
        except DeviceFailed as exc:
            self.exit_code = 1
            log.critical("exiting with an error, the batch uncommitted: %s", exc)
            return False
        return True

    def _publish(self, results: list[Result]) -> bool:
        """Store every result; False when stopped first or when one cannot be stored."""
        outcome = self.publisher.publish(results)
        if outcome is Outcome.UNDELIVERABLE:
            self.exit_code = 1
            log.critical(
                "exiting with an error: a result of this batch of %d records cannot be stored; "
                "its offsets are not committed",
                len(results),
            )
        elif outcome is Outcome.STOPPED:
            log.error(
                "stopping with results of %d records unacknowledged: the batch is not "
                "committed and will be processed again",
                len(results),
            )
        return outcome is Outcome.ACKNOWLEDGED

    # -- housekeeping --------------------------------------------------------------------

    def _keep_alive(self) -> None:
        """Stay in the group while waiting on posters or acknowledgements."""
        keep_alive(self.consumer)

    def _check_lag(self) -> None:
        """Every few seconds, publish each assigned partition's lag as a metric."""
        now = time.monotonic()
        if now < self._next_lag_check:
            return
        self._next_lag_check = now + LAG_CHECK_S
        for tp, value in (read_lag(self.consumer) or {}).items():
            if value is not None:
                self.metrics.set_lag(tp.topic, tp.partition, value)
        self.group.look(self.assignments.held)

    def _idle_for(self, seconds: float, batch: Batch | None) -> bool:
        """True when nothing arrived for `seconds` and the input is drained (exit when idle)."""
        now = time.monotonic()
        if batch is not None:
            self._idle_since = now
            return False
        if now - self._idle_since < seconds:
            return False
        if drained(read_lag(self.consumer)):
            log.info("input drained and idle for %.1f s: exiting", now - self._idle_since)
            return True
        self._idle_since = now
        return False


def readiness(
    consumer: KafkaConsumer, models: ModelWatcher, group_id: str, stalled: str | None
) -> tuple[bool, str]:
    """Ready: a model is loaded and the consumer is a member of its group, not a stalled standby.

    Any number of partitions, zero included (a standby), so that replicas beyond the
    partition count are ready too (docs/deployment.md#readiness); but not a standby that
    sees the group's input wait with nobody committing (`worker.standby`).
    """
    if models.current is None:
        return False, "no model loaded"
    if stalled:  # first: while it rejoins, it is not in the group either
        return False, stalled
    # group_metadata() takes only the coordinator's lock: safe from the HTTP thread
    generation = consumer.group_metadata().generation_id
    if generation < 0:
        return False, f"not in consumer group {group_id} yet"
    assigned = len(consumer.assignment())
    standby = " (standby)" if assigned == 0 else ""
    partitions = f"{assigned} partitions{standby}"
    return True, f"model version {models.current.version}, generation {generation}, {partitions}"


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


def finish_due(
    in_flight: deque[Batch], polled: Batch | None, ahead: int, downloads: PosterDownloads
) -> bool:
    """Whether to finish the oldest batch in flight now rather than poll another one first.

    Now when the last poll found nothing, when its posters are all in, or when `ahead`
    (`FETCH_AHEAD`) batches are already downloading behind it: over a long round trip the
    downloads of several batches overlap, so that classifying does not wait for them.
    """
    if not in_flight:
        return False
    if polled is None or len(in_flight) > ahead:
        return True
    return downloads.ready(in_flight[0])


def _log_batch(batch: Batch, fetch_s: float, classify_s: float, publish_s: float) -> None:
    """One line per finished batch: outcomes and where the time went."""
    codes = batch.error_codes()
    failed = sum(codes.values())
    by_code = ", ".join(f"{code}={n}" for code, n in sorted(codes.items()))
    log.info(
        "batch of %d: %d genres, %d dead letters%s; "
        "wait for posters %.3f s, classify %.3f s, publish %.3f s",
        len(batch.jobs),
        len(batch.jobs) - failed,
        failed,
        f" ({by_code})" if by_code else "",
        fetch_s,
        classify_s,
        publish_s,
    )
