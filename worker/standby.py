"""A standby that sees its group's input wait unconsumed does not stay idle.

A member with no partitions cannot tell a busy owner from a dead one by the assignment:
the broker may keep handing the partitions to a member that no longer consumes them. What
it can see is the group's committed offsets and the ends of the input topic. When records
wait and no committed offset has moved for STANDBY_STALL_S, this member leaves the group
and joins it again: the rejoin makes the coordinator re-divide the partitions among the
members that answer. While that lasts, readiness is false and a metric says so, so that
an operator or an orchestrator notices a group nobody consumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.partitions import LAG_TIMEOUT_MS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupProgress:
    """The group's committed offsets and the ends of the input partitions, at one moment."""

    committed: dict[int, int | None]  # partition -> the group's committed offset (None: none)
    ends: dict[int, int]  # partition -> end offset
    starts: dict[int, int]  # partition -> first offset still kept

    @property
    def waiting(self) -> int:
        """Records past the group's committed offsets (from the start where none is)."""
        return sum(
            max(0, end - (self.committed.get(p) or self.starts.get(p, 0)))
            for p, end in self.ends.items()
        )


def read_progress(consumer: KafkaConsumer, topic: str) -> GroupProgress | None:
    """The group's progress on `topic`, or None when the broker does not answer in time."""
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    if not partitions:
        return None
    try:
        ends = consumer.end_offsets(partitions, timeout_ms=LAG_TIMEOUT_MS)
        starts = consumer.beginning_offsets(partitions, timeout_ms=LAG_TIMEOUT_MS)
        committed = {
            tp.partition: consumer.committed(tp, timeout_ms=LAG_TIMEOUT_MS) for tp in partitions
        }
    except KafkaError as exc:
        log.debug("could not read the group's progress: %s", exc)
        return None
    return GroupProgress(
        committed,
        {tp.partition: end for tp, end in ends.items()},
        {tp.partition: start for tp, start in starts.items()},
    )


class StandbyWatch:
    """Decides when an idle standby rejoins: records wait and no commit moved for `stall_s`."""

    def __init__(
        self,
        stall_s: float,
        read: Callable[[], GroupProgress | None],
        rejoin: Callable[[], None],
        metrics: WorkerMetrics,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stall_s = stall_s
        self.read = read
        self.rejoin = rejoin
        self.metrics = metrics
        self._clock = clock
        self._committed: dict[int, int | None] | None = None
        self._since: float | None = None  # when the group was last seen idle with records waiting
        self.stalled: str | None = None  # why readiness is false, while it is

    def check(self, assigned: int) -> None:
        """Look at the group once (the Kafka thread, every few seconds); rejoin if it stalls."""
        if assigned > 0 or self.stall_s <= 0:
            self._reset()
            return
        progress = self.read()
        if progress is None:  # no answer is no verdict
            return
        now = self._clock()
        if progress.waiting == 0 or progress.committed != self._committed:
            self._reset()  # nothing waits, or an owner committed since the last look
            self._committed = progress.committed
            self._since = now if progress.waiting > 0 else None
        elif self._since is None:
            self._since = now
        elif now - self._since >= self.stall_s:
            self._stall(progress.waiting, now - self._since)

    def _stall(self, waiting: int, idle_s: float) -> None:
        """Say so, and leave and rejoin the group so that its partitions are divided again."""
        self.stalled = (
            f"standby while {waiting} records wait with no commit for {idle_s:.0f} s: rejoining"
        )
        self.metrics.group.standby_stalled.set(1)
        self.metrics.group.rejoins.inc()
        log.warning(
            "this member has no partitions while %d records of the group's input wait and no "
            "offset was committed for %.0f s (STANDBY_STALL_S): leaving and rejoining the group",
            waiting,
            idle_s,
        )
        self.rejoin()
        self._since = self._clock()  # give the rejoin a whole period before the next one

    def _reset(self) -> None:
        if self.stalled is not None:
            log.info("the group's input moves again (or this member got partitions)")
        self.stalled = None
        self._since = None
        self.metrics.group.standby_stalled.set(0)
