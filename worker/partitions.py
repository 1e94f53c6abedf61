"""This member's side of the consumer group: commits, keep-alive polls and lag.

A finished batch's offsets are committed only for partitions this member still owns,
and owns in the same assignment it polled them in: a partition revoked and given back
meanwhile (A -> B -> A) was read on from B's commits, and an old offset committed now
would undo them. Either way the records go to the new owner again, which costs
duplicates but never skips a record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_MS = 30_000
# Bound on each lag query: without one, `position` waits for the group coordinator for as
# long as it is away, and the loop could not see a SIGTERM meanwhile.
LAG_TIMEOUT_MS = 1_000


class Assignments:
    """In which assignment (counted from 1) this member was last given each partition.

    kafka-python calls `assigned` and `revoked` from its rebalance listener, on its own
    thread; the Kafka thread reads.
    """

    def __init__(self) -> None:
        self.count = 0
        self._generation: dict[TopicPartition, int] = {}
        self._lock = threading.Lock()

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """Count one assignment; `partitions` belong to it."""
        with self._lock:
            self.count += 1
            for tp in partitions:
                self._generation[tp] = self.count

    @property
    def held(self) -> int:
        """How many partitions this member holds now."""
        with self._lock:
            return len(self._generation)

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget the generation of partitions taken away."""
        with self._lock:
            for tp in partitions:
                self._generation.pop(tp, None)

    def generations(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The generation of each of `partitions` now (for a batch being polled)."""
        with self._lock:
            return {tp: self._generation[tp] for tp in partitions if tp in self._generation}

    def current(
        self, offsets: dict[TopicPartition, int], polled_in: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The `offsets` of partitions still in the generation they were polled in."""
        now = self.generations(offsets)
        kept = {tp: offset for tp, offset in offsets.items() if now.get(tp) == polled_in.get(tp)}
        if len(kept) < len(offsets):
            log.info(
                "not committing %d partition(s) reassigned since the batch was polled: %s",
                len(offsets) - len(kept),
                sorted(f"{tp.topic}[{tp.partition}]" for tp in offsets if tp not in kept),
            )
        return kept


def commit_owned(consumer: KafkaConsumer, offsets: dict[TopicPartition, int]) -> bool:
    """Commit `offsets` of the partitions still assigned; True if the broker accepted them."""
    assigned = consumer.assignment()
    owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    if len(owned) < len(offsets):
        log.info(
            "not committing %d partition(s) revoked meanwhile; their new owner redoes them",
            len(offsets) - len(owned),
        )
    if not owned:
        return False
    try:
        consumer.commit(
            {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in owned.items()},
            timeout_ms=COMMIT_TIMEOUT_MS,
        )
    except CommitFailedError as exc:
        # The group moved on (a rebalance): another member re-reads these records.
        log.warning("commit refused after a rebalance, the batch will be redelivered: %s", exc)
        return False
    except KafkaError as exc:
        # Results are stored; only the commit is lost, so these records come again.
        log.warning("commit failed, the batch will be redelivered: %s", exc)
        return False
    return True


def keep_alive(consumer: KafkaConsumer) -> None:
    """Poll with every partition paused, so the group keeps this member while it waits."""
    assigned = list(consumer.assignment())
    consumer.pause(*assigned)
    try:
        consumer.poll(timeout_ms=0)
    finally:
        consumer.resume(*[tp for tp in assigned if tp in consumer.assignment()])


def lag(consumer: KafkaConsumer) -> dict[TopicPartition, int | None] | None:
    """Records between the position and the end of each assigned partition (None: none).

    A partition whose position is not known within the bound has lag None, and so have
    the partitions after it: the coordinator that did not answer would not answer them.
    """
    assigned = list(consumer.assignment())
    if not assigned:
        return None
    ends = consumer.end_offsets(assigned, timeout_ms=LAG_TIMEOUT_MS)
    lags: dict[TopicPartition, int | None] = dict.fromkeys(assigned)
    for tp in assigned:
        position = consumer.position(tp, timeout_ms=LAG_TIMEOUT_MS)
        if position is None:
            break
        lags[tp] = max(0, ends[tp] - position)
    return lags


def read_lag(consumer: KafkaConsumer) -> dict[TopicPartition, int | None] | None:
    """`lag`, or None when the broker does not answer (logged at debug level)."""
    try:
        return lag(consumer)
    except KafkaError as exc:
        log.debug("could not read the consumer lag: %s", exc)
        return None


def drained(lags: dict[TopicPartition, int | None] | None) -> bool:
    """Every assigned partition is known to be read to its end."""
    return lags is not None and all(value == 0 for value in lags.values())
