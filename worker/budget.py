"""This member's share of the group's rate limits, from its share of the input partitions.

SITE_RATE_LIMIT, IMAGE_RATE_LIMIT and RATE_LIMIT_BURST bound what the whole consumer group
sends, not each process. Members do not talk to each other: the group's assignment already
divides the input topic's partitions without overlap, so a member that paces at
`assigned / total` of the limits gives shares that add up to 1, and every rebalance
re-divides them. A standby (no partitions) has a share of 0 and polls nothing, so it sends
nothing new; requests it still has in hand from partitions just taken away go at one
partition's share, since a token bucket cannot hand out a delay for a rate of 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from poster_genres.worker.fetching import AsyncRunner
from poster_genres.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class Pacer(Protocol):
    """What the budget drives: `posters.policy.pacing.HostPacer`."""

    def set_share(self, share: float) -> None: ...


class PartitionCounter(Protocol):
    """What the budget asks: a consumer's view of the topic (`KafkaConsumer`)."""

    def partitions_for_topic(self, topic: str) -> set[int] | None: ...


def group_share(assigned: int, total: int) -> float:
    """The share of the group's limits that `assigned` of `total` partitions give (0..1)."""
    total = max(total, assigned)  # metadata not known yet: what is owned is all there is
    return assigned / total if total > 0 else 0.0


def pacing_share(assigned: int, total: int) -> float:
    """The share the pacer runs at: the group share, or one partition's for a standby."""
    total = max(total, assigned, 1)
    return max(assigned, 1) / total


def pace_on(runner: AsyncRunner, pacer: Pacer) -> Callable[[float], None]:
    """Set `pacer`'s share on the fetch loop, which is the only thread that uses it."""
    return lambda share: runner.loop.call_soon_threadsafe(pacer.set_share, share)


class GroupBudget:
    """Re-divides the rate limits whenever this member's partitions change."""

    def __init__(
        self,
        topic: str,
        consumer: PartitionCounter,
        metrics: WorkerMetrics,
        apply: Callable[[float], None],
    ):
        self.topic = topic
        self.consumer = consumer
        self.metrics = metrics
        self.apply = apply
        self.share = 0.0  # before the first assignment: nothing is polled, so nothing is sent
        self._pacing: float | None = None

    def update(self, assigned: int) -> float:
        """Take the share that `assigned` partitions of the input topic give; return it."""
        total = len(self.consumer.partitions_for_topic(self.topic) or ())
        self.share = group_share(assigned, total)
        self.metrics.group.rate_budget_share.set(self.share)
        pacing = pacing_share(assigned, total)
        if pacing != self._pacing:
            self._pacing = pacing
            self.apply(pacing)
        log.debug(
            "rate limits: this member's share is %.3f (%d of %d partitions of %s)%s",
            self.share,
            assigned,
            max(total, assigned),
            self.topic,
            "; a standby sends nothing new" if assigned == 0 else "",
        )
        return self.share
