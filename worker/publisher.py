"""Send a batch's results and wait until the broker acknowledged every one of them.

The batch's offsets may be committed only after that, so a result the producer could
not deliver is sent again, with a doubling pause, for as long as the worker runs. A
stop gives unacknowledged sends a grace period; past it the batch is left uncommitted
and a restart processes it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from worker.metrics import WorkerMetrics
from worker.results import Result

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0  # how long a stop waits for unacknowledged results before giving up on them
FIRST_PAUSE_S = 1.0  # before results that failed are sent again; doubles each round
MAX_PAUSE_S = 30.0


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
        grace_s: float = STOP_GRACE_S,
        first_pause_s: float = FIRST_PAUSE_S,
    ):
        self.producer = producer
        self.metrics = metrics
        self.stopped = stopped
        self.keep_alive = keep_alive
        self.grace_s = grace_s
        self.first_pause_s = first_pause_s

    def publish(self, results: list[Result]) -> bool:
        """Send until every result is acknowledged; False if stopped first (do not commit)."""
        pending = results
        pause = self.first_pause_s
        while pending:
            delivery = self.send(pending)
            if not delivery.settled:
                return False
            if not delivery.failed:
                return True
            log.error(
                "%d of %d results were not acknowledged (%s); sending again in %.0f s",
                len(delivery.failed), len(pending), delivery.failed[0][1], pause,
            )
            if self.stopped.wait(pause):
                return False
            pause = min(pause * 2, MAX_PAUSE_S)
            self.keep_alive()
            pending = [result for result, _ in delivery.failed]
        return True

    def send(self, results: list[Result]) -> Delivery:
        """One round: send every result, await the broker, report what was not acknowledged."""
        delivery = Delivery()
        sent: list[tuple[Result, Any]] = []
        for result in results:
            if delivery.failed:  # the producer could not even queue one (no metadata): later
                delivery.failed.append((result, delivery.failed[0][1]))
                continue
            try:
                future = self.producer.send(
                    result.topic, key=result.key, value=result.value, headers=result.headers
                )
            except KafkaError as exc:
                delivery.failed.append((result, exc))
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
                result.code, result.input_timestamp_ms, result.model_version
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
