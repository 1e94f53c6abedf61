"""This member's side of the consumer group: commits, keep-alive polls and lag.

A finished batch's offsets are committed only for partitions this member still owns:
a revoked partition's records are processed again by its new owner, which costs
duplicates but never skips a record.
"""

from __future__ import annotations

import logging

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_MS = 30_000
# Bound on each lag query: without one, `position` waits for the group coordinator for as
# long as it is away, and the loop could not see a SIGTERM meanwhile.
LAG_TIMEOUT_MS = 1_000


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
