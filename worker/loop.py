"""The consume -> fetch -> classify -> produce -> commit loop.

Batch N+1 is polled and its posters start downloading before batch N is classified,
so network I/O and inference overlap. Offsets of a batch are committed only after
the broker acknowledged every output and dead letter of that batch; batches finish
in poll order, so a commit never passes a record whose result is not stored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from schemas import DeadLetter, EventDecodeError, MovieGenres, NewMovie, OriginalRecord, decode_new_movie
from worker.classifier import Classifier
from worker.errors import InvalidEvent, WorkerError
from worker.metrics import WorkerMetrics
from worker.models import ModelWatcher
from posters import Poster, PosterFetcher
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

KEEP_ALIVE_S = 5.0  # while waiting on posters, poll (partitions paused) this often
STOP_GRACE_S = 10.0  # how long a stop waits for unacknowledged results before giving up on them


class AsyncRunner:
    """An asyncio loop on a daemon thread, so the Kafka thread can hand it coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fetch-loop", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


@dataclass
class Job:
    """One input record on its way to an output (`scores`) or a dead letter (`error`)."""

    record: ConsumerRecord
    event: NewMovie | None = None
    event_id: str | None = None
    fetch: concurrent.futures.Future[Poster] | None = None
    poster: Poster | None = None
    scores: np.ndarray | None = None
    error: WorkerError | None = None


@dataclass
class Result:
    """The one record an input ends as: an output or a dead letter."""

    topic: str
    key: bytes | None
    value: bytes
    code: str  # the dead letter's error code; empty for an output
    input_timestamp_ms: int | None


@dataclass
class Batch:
    """Records from one poll, in order, and the offsets to commit once they are done."""

    jobs: list[Job]
    offsets: dict[TopicPartition, int]


@dataclass
class Stats:
    """Counters for the exit summary."""

    consumed: int = 0
    produced: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    commits: int = 0

    def summary(self) -> str:
        codes = ", ".join(f"{code}={n}" for code, n in sorted(self.dead_letters.items())) or "none"
        return (
            f"consumed={self.consumed} produced={self.produced} "
            f"dead_letters={sum(self.dead_letters.values())} ({codes}) batches={self.batches} commits={self.commits}"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _summary(exc: BaseException) -> str:
    """`Type: message` plus the innermost frames, short enough for a dead letter."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in reversed(frames))
    return f"{type(exc).__name__}: {str(exc)[:300]}" + (f" at {where}" if where else "")


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
    ):
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.fetcher = fetcher
        self.runner = runner
        self.models = models
        self.metrics = metrics or WorkerMetrics()
        self.stats = Stats()
        self._stop = threading.Event()
        self._in_flight: Batch | None = None
        self._abandoned = False  # stopped with results unacknowledged: finish nothing more
        self._retries_seen = 0

    # -- control -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit and return (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def ready(self) -> tuple[bool, str]:
        """Readiness: a model is loaded and the consumer has partitions."""
        if self.models.current is None:
            return False, "no model loaded"
        if not self.consumer.assignment():
            return False, "waiting for partitions"
        return True, f"model version {self.models.current.version}, {len(self.consumer.assignment())} partitions"

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Note a revocation. kafka-python calls this on its IO thread, where no blocking
        network call may be made; the batch in hand is finished by the Kafka thread, and if
        its commit is refused the partitions' new owner processes those records again."""
        log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))
        for tp in revoked:
            self.metrics.forget_partition(tp.topic, tp.partition)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))

    # -- the loop ------------------------------------------------------------------------

    def run(self, exit_when_idle: float | None = None) -> Stats:
        """Poll, start fetching, finish the previous batch; until stopped (or idle, if asked)."""
        idle_since = time.monotonic()
        next_lag_check = 0.0
        while not self.stopping:
            self._swap_model()
            timeout_ms = self.settings.batch_linger_ms if self._in_flight else 500
            records = self._poll(timeout_ms)
            batch = self._start(records) if records else None
            if self._in_flight is not None:
                self._finish(self._in_flight)
            self._in_flight = batch
            now = time.monotonic()
            if batch is not None:
                idle_since = now
            if now >= next_lag_check:
                next_lag_check = now + 5.0
                self._update_lag()
            if exit_when_idle is not None and batch is None and now - idle_since >= exit_when_idle:
                if self._drained():
                    log.info("input drained and idle for %.1f s: exiting", now - idle_since)
                    break
                idle_since = now
        if self._in_flight is not None and not self._abandoned:
            batch, self._in_flight = self._in_flight, None
            self._finish(batch)
        log.info("worker stopped: %s", self.stats.summary())
        return self.stats

    def _poll(self, timeout_ms: int) -> list[ConsumerRecord]:
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.settings.batch_size)
        records = [record for partition_records in polled.values() for record in partition_records]
        return records

    def _swap_model(self) -> None:
        classifier = self.models.poll()
        if classifier is not None:
            self.metrics.model_version.set(classifier.version)

    # -- one batch -----------------------------------------------------------------------

    def _start(self, records: list[ConsumerRecord]) -> Batch:
        """Validate each record and start downloading the posters of the valid ones."""
        jobs = [self._validate(record) for record in records]
        for job in jobs:
            if job.event is not None:
                job.fetch = self.runner.submit(self._fetch(job.event.tmdb_id))
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, -1), record.offset + 1)
        self.stats.consumed += len(records)
        self.metrics.events_consumed.inc(len(records))
        self.metrics.batch_size.observe(len(records))
        return Batch(jobs, offsets)

    async def _fetch(self, tmdb_id: int) -> Poster:
        begun = time.monotonic()
        try:
            return await self.fetcher.fetch(tmdb_id)
        finally:
            self.metrics.poster_fetch_seconds.observe(time.monotonic() - begun)

    def _validate(self, record: ConsumerRecord) -> Job:
        job = Job(record)
        try:
            job.event = decode_new_movie(record.value, self.settings.max_event_bytes)
            job.event_id = job.event.event_id or str(uuid.uuid4())
        except EventDecodeError as exc:
            job.error = InvalidEvent(str(exc))
        return job

    def _finish(self, batch: Batch) -> None:
        """Wait for the posters, classify them in one call, publish every result, commit."""
        started = time.monotonic()
        self._collect_posters(batch)
        fetched = time.monotonic()
        classifier = self.models.current
        self._classify(batch, classifier)
        classified = time.monotonic()
        records = [self._result_record(job, classifier) for job in batch.jobs]
        if not self._publish(records):
            self._abandoned = True
            log.error("stopping with results of %d records unacknowledged: the batch is not committed "
                      "and will be processed again", len(records))
            return
        published = time.monotonic()
        self._commit(batch.offsets)
        self.stats.batches += 1
        self._log_batch(batch, fetched - started, classified - fetched, published - classified)

    def _collect_posters(self, batch: Batch) -> None:
        pending = [job.fetch for job in batch.jobs if job.fetch is not None]
        while pending:  # long outages must not cost this member its place in the group
            pending = list(concurrent.futures.wait(pending, timeout=KEEP_ALIVE_S).not_done)
            if pending:
                self._keep_alive()
        for job in batch.jobs:
            if job.fetch is None:
                continue
            try:
                job.poster = job.fetch.result()
            except WorkerError as exc:
                job.error = exc
            except Exception as exc:  # a bug in fetching must not take the batch down
                log.exception("unexpected error fetching the poster of %s", job.event and job.event.tmdb_id)
                job.error = WorkerError(f"unexpected error fetching the poster: {_summary(exc)}")
        retries = self.fetcher.retries
        self.metrics.fetch_retries.inc(retries - self._retries_seen)
        self._retries_seen = retries

    def _classify(self, batch: Batch, classifier: Classifier | None) -> None:
        """Score every downloaded poster of the batch in one model call."""
        jobs = [job for job in batch.jobs if job.poster is not None and job.error is None]
        if not jobs:
            return
        if classifier is None:
            raise RuntimeError("no model is loaded")
        begun = time.monotonic()
        try:
            results = classifier.classify([job.poster.content for job in jobs])  # type: ignore[union-attr]
        except Exception as exc:
            log.exception("the model failed on a batch of %d posters", len(jobs))
            detail = f"the model failed on the batch: {_summary(exc)}"
            results = [WorkerError(detail) for _ in jobs]
        self.metrics.inference_seconds.observe(time.monotonic() - begun)
        for job, result in zip(jobs, results):
            if isinstance(result, WorkerError):
                job.error = result
                job.error.attempts = job.poster.attempts  # type: ignore[union-attr]
            else:
                job.scores = result

    def _result_record(self, job: Job, classifier: Classifier | None) -> Result:
        """(topic, key, value, code) of the one record this job ends as."""
        try:
            if job.error is not None:
                return self._dead_letter(job, job.error)
            if job.scores is None or job.poster is None or job.event is None or classifier is None:
                raise RuntimeError("the event has neither scores nor an error")
            genres, by_label = classifier.genres(job.scores)
            output = MovieGenres(
                event_id=str(uuid.uuid4()),
                source_event_id=job.event_id or "",
                tmdb_id=job.event.tmdb_id,
                title=job.event.title,
                genres=genres,
                scores=by_label,
                model_version=classifier.version,
                poster_url=job.poster.url,
                classified_at=_now(),
            )
            key = str(job.event.tmdb_id).encode()
            return Result(
                self.settings.output_topic, key, output.model_dump_json().encode(), "", job.record.timestamp
            )
        except Exception as exc:  # never let one event take the batch down
            log.exception("unexpected error building the result of offset %s", job.record.offset)
            return self._dead_letter(job, WorkerError(f"unexpected error: {_summary(exc)}"))

    def _dead_letter(self, job: Job, error: WorkerError) -> Result:
        record = job.record
        letter = DeadLetter(
            error=error.code,
            detail=error.detail,
            attempts=error.attempts,
            failed_at=_now(),
            tmdb_id=job.event.tmdb_id if job.event else None,
            source_event_id=job.event_id,
            original=OriginalRecord.from_raw(
                record.topic, record.partition, record.offset, record.key, record.value, record.timestamp
            ),
        )
        key = str(job.event.tmdb_id).encode() if job.event else record.key
        log.info(
            "dead letter %s for %s[%d]@%d: %s",
            error.code, record.topic, record.partition, record.offset, error.detail,
        )
        return Result(
            self.settings.dlq_topic, key, letter.model_dump_json().encode(), str(error.code), record.timestamp
        )

    def _publish(self, records: list[Result]) -> bool:
        """Send every result and wait until the broker acknowledged all of them.

        Records the producer could not deliver are sent again (with a pause) until they
        are acknowledged. Returns False if the worker was stopped first (after a grace
        period): then the batch must not be committed, and a restart processes it again.
        """
        pending = records
        delay = 1.0
        while pending:
            futures, failed = [], []
            for rec in pending:
                if failed:  # the producer could not even queue one (no metadata): try the rest later
                    failed.append((rec, failed[0][1]))
                    continue
                try:
                    futures.append((rec, self.producer.send(rec.topic, key=rec.key, value=rec.value)))
                except KafkaError as exc:
                    failed.append((rec, exc))
            if not self._await_acks([future for _, future in futures]):
                return False
            for rec, future in futures:
                try:
                    future.get(timeout=0)
                except KafkaError as exc:
                    failed.append((rec, exc))
                    continue
                self._count_result(rec)
            if not failed:
                return True
            log.error("%d of %d results were not acknowledged (%s); sending again in %.0f s",
                      len(failed), len(pending), failed[0][1], delay)
            if self._stop.wait(delay):
                return False
            delay = min(delay * 2, 30.0)
            self._keep_alive()
            pending = [rec for rec, _ in failed]
        return True

    def _await_acks(self, futures: list[Any]) -> bool:
        """Flush until every send is settled; give up only when stopped and the grace ran out."""
        stopped_at: float | None = None
        while not all(future.is_done for future in futures):
            try:
                self.producer.flush(timeout=1.0)
            except KafkaError:  # a flush timeout: the broker is slow or gone
                pass
            if self.stopping:
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > STOP_GRACE_S:
                    return False
        return True

    def _count_result(self, rec: Result) -> None:
        if rec.code:
            self.stats.dead_letters[rec.code] += 1
            self.metrics.dead_letters.labels(code=rec.code).inc()
        else:
            self.stats.produced += 1
            self.metrics.outputs_produced.inc()
        if rec.input_timestamp_ms is not None and rec.input_timestamp_ms > 0:
            self.metrics.end_to_end_seconds.observe(max(0.0, time.time() - rec.input_timestamp_ms / 1000))

    def _keep_alive(self) -> None:
        """Poll with every partition paused, so the group keeps this member while it waits."""
        assigned = list(self.consumer.assignment())
        self.consumer.pause(*assigned)
        try:
            self.consumer.poll(timeout_ms=0)
        finally:
            self.consumer.resume(*[tp for tp in assigned if tp in self.consumer.assignment()])

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assigned = self.consumer.assignment()
        owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if len(owned) < len(offsets):
            log.info("not committing %d partition(s) revoked meanwhile; their new owner redoes them",
                     len(offsets) - len(owned))
        if not owned:
            return
        try:
            self.consumer.commit(
                {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in owned.items()}, timeout_ms=30_000
            )
            self.stats.commits += 1
        except CommitFailedError as exc:
            # The group moved on (a rebalance): another member re-reads these records.
            log.warning("commit refused after a rebalance, the batch will be redelivered: %s", exc)
        except KafkaError as exc:
            # Results are stored; only the commit is lost, so these records come again.
            log.warning("commit failed, the batch will be redelivered: %s", exc)

    def _log_batch(self, batch: Batch, fetch_s: float, classify_s: float, publish_s: float) -> None:
        codes = Counter(str(job.error.code) for job in batch.jobs if job.error is not None)
        ok = len(batch.jobs) - sum(codes.values())
        log.info(
            "batch of %d: %d genres, %d dead letters%s; wait for posters %.3f s, classify %.3f s, publish %.3f s",
            len(batch.jobs), ok, sum(codes.values()),
            f" ({', '.join(f'{c}={n}' for c, n in sorted(codes.items()))})" if codes else "",
            fetch_s, classify_s, publish_s,
        )

    # -- housekeeping --------------------------------------------------------------------

    def _lag(self) -> dict[TopicPartition, int] | None:
        assigned = list(self.consumer.assignment())
        if not assigned:
            return None
        ends = self.consumer.end_offsets(assigned)
        return {tp: max(0, ends[tp] - self.consumer.position(tp)) for tp in assigned}

    def _update_lag(self) -> None:
        try:
            lag = self._lag()
        except KafkaError as exc:
            log.debug("could not read the consumer lag: %s", exc)
            return
        for tp, value in (lag or {}).items():
            self.metrics.set_lag(tp.topic, tp.partition, value)

    def _drained(self) -> bool:
        try:
            lag = self._lag()
        except KafkaError as exc:
            log.debug("could not read the consumer lag: %s", exc)
            return False
        return lag is not None and not any(lag.values())

