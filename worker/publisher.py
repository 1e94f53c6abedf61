"""Send a batch's results and wait until the broker acknowledged every one of them.

The batch's offsets may be committed only after that, so a result the producer could
not deliver is sent again, with a doubling pause, for as long as the worker runs. A
stop gives unacknowledged sends a grace period; past it the batch is left uncommitted
and a restart processes it again. A record the broker (or the producer) refuses for
good, such as one over the size limit or for a topic it may not write, is never sent
again as it is: it is replaced by a smaller dead letter, and if even that is refused
the batch stays uncommitted and the worker must exit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from kafka import KafkaProducer
from kafka import errors as kafka_errors
from kafka.errors import KafkaError

from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.results import Result

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0  # how long a stop waits for unacknowledged results before giving up on them
FIRST_PAUSE_S = 1.0  # before results that failed are sent again; doubles each round
MAX_PAUSE_S = 30.0

# Refusals of the record itself: sending it again cannot succeed (kafka.errors marks them
# not `retriable`). Other non-retriable errors (the idempotent producer's sequence errors,
# a closed producer) keep the old policy: send again, since a healthy producer may pass.
REFUSALS: tuple[type[KafkaError], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidRecordError,
    kafka_errors.CorruptRecordError,
    kafka_errors.InvalidTimestampError,
    kafka_errors.InvalidTopicError,
    kafka_errors.PolicyViolationError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.AuthorizationError,
)


def is_refusal(exc: BaseException) -> bool:
    """Whether sending the same record again is pointless."""
    return isinstance(exc, REFUSALS)


class Outcome(Enum):
    """How publishing a batch's results ended."""

    ACKNOWLEDGED = "acknowledged"  # every result (or its smaller stand-in) is stored
    STOPPED = "stopped"  # the worker was stopped first: do not commit
    UNDELIVERABLE = "undeliverable"  # even the smallest dead letter was refused: do not commit


@dataclass
class Delivery:
    """What one round of sending came to."""

    acknowledged: list[Result] = field(default_factory=list)
    failed: list[tuple[Result, Exception]] = field(default_factory=list)
    settled: bool = True  # False: stopped, and the grace ran out before every send settled


class Publisher:
    """Sends results and waits for their acknowledgements, sending failures again."""

    def __init__(
        self,
        producer: KafkaProducer,
        metrics: WorkerMetrics,
        stopped: threading.Event,
        keep_alive: Callable[[], None],
        shrink: Callable[[Result, Exception], Result | None] = lambda result, exc: None,
        grace_s: float = STOP_GRACE_S,
        first_pause_s: float = FIRST_PAUSE_S,
    ):
        self.producer = producer
        self.metrics = metrics
        self.stopped = stopped
        self.keep_alive = keep_alive
        self.shrink = shrink  # a smaller dead letter for a refused result, if there is one
        self.grace_s = grace_s
        self.first_pause_s = first_pause_s

    def publish(self, results: list[Result]) -> Outcome:
        """Send until every result (or its stand-in) is acknowledged, or it cannot be."""
        pending = results
        pause = self.first_pause_s
        while pending:
            total = len(pending)
            delivery = self.send(pending)
            if not delivery.settled:
                return Outcome.STOPPED
            retry = [(result, exc) for result, exc in delivery.failed if not is_refusal(exc)]
            smaller = self._replace_refused(delivery)
            if smaller is None:
                return Outcome.UNDELIVERABLE
            pending = [result for result, _ in retry] + smaller
            if not retry:
                continue
            log.error(
                "%d of %d results were not acknowledged (%s); sending again in %.0f s",
                len(retry),
                total,
                retry[0][1],
                pause,
            )
            if self.stopped.wait(pause):
                return Outcome.STOPPED
            pause = min(pause * 2, MAX_PAUSE_S)
            self.keep_alive()
        return Outcome.ACKNOWLEDGED

    def _replace_refused(self, delivery: Delivery) -> list[Result] | None:
        """Smaller dead letters for the refused results; None if one cannot be made smaller."""
        smaller = []
        for result, exc in delivery.failed:
            if not is_refusal(exc):
                continue
            replacement = self.shrink(result, exc)
            if replacement is None:
                log.critical(
                    "the broker refused a %d-byte record for %s even as a dead letter without "
                    "its value (%r): this batch cannot be stored, so it is not committed",
                    len(result.value),
                    result.topic,
                    exc,
                )
                return None
            log.warning(
                "the broker refused a %d-byte record for %s (%r): sending a %d-byte dead "
                "letter instead",
                len(result.value),
                result.topic,
                exc,
                len(replacement.value),
            )
            smaller.append(replacement)
        return smaller

    def send(self, results: list[Result]) -> Delivery:
        """One round: send every result, await the broker, report what was not acknowledged."""
        delivery = Delivery()
        sent: list[tuple[Result, Any]] = []
        unqueued: Exception | None = None
        for result in results:
            if unqueued is not None:  # the producer could not queue one (no metadata): later
                delivery.failed.append((result, unqueued))
                continue
            try:
                future = self.producer.send(
                    result.topic, key=result.key, value=result.value, headers=result.headers
                )
            except KafkaError as exc:  # e.g. over max_request_size, or no metadata in time
                delivery.failed.append((result, exc))
                unqueued = None if is_refusal(exc) else exc
                continue
            sent.append((result, future))
        if not self._await_acks([future for _, future in sent]):
            delivery.settled = False
            return delivery
        for result, future in sent:
            try:
                future.get(timeout=0)
            except KafkaError as exc:
                delivery.failed.append((result, exc))
                continue
            delivery.acknowledged.append(result)
            self.metrics.acknowledged(
                result.code, result.input_timestamp_ms, result.model_version, result.agreement
            )
        return delivery

    def _await_acks(self, futures: list[Any]) -> bool:
        """Flush until every send is settled; give up only when stopped and the grace ran out."""
        stopped_at: float | None = None
        while not all(future.is_done for future in futures):
            try:
                self.producer.flush(timeout=1.0)
            except KafkaError:  # a flush timeout: the broker is slow or gone
                pass
            if self.stopped.is_set():
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > self.grace_s:
                    return False
        return True
