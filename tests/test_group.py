"""The worker as a member of its consumer group: lag queries, rebalances and commits."""

from __future__ import annotations

import threading
import time

from kafka import TopicPartition

from tests.fakes import FakeClassifier, FakeConsumer, FakeFetcher, FakeModels, FakeProducer
from worker.fetching import AsyncRunner
from worker.loop import Worker
from worker.partitions import drained, lag
from worker.settings import WorkerSettings

TP0, TP1 = TopicPartition("movies.new", 0), TopicPartition("movies.new", 1)


class CoordinatorAway(FakeConsumer):
    """The group coordinator does not answer: a position not yet known cannot be fetched."""

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        if timeout_ms is None:  # kafka-python then waits until the coordinator is back
            time.sleep(30)
            raise AssertionError("position() was called without a bound")
        time.sleep(timeout_ms / 1000)
        return None


def test_an_unknown_position_is_unknown_lag_not_zero():
    consumer = CoordinatorAway(assigned={TP0, TP1}, ends={TP0: 5, TP1: 5})
    began = time.monotonic()
    lags = lag(consumer)
    assert time.monotonic() - began < 1.9  # the coordinator is asked once, not per partition
    assert lags == {TP0: None, TP1: None}
    assert not drained(lags)
    assert drained({TP0: 0, TP1: 0}) and not drained({TP0: 0, TP1: 2}) and not drained(None)


def test_sigterm_is_handled_while_the_coordinator_is_away():
    consumer = CoordinatorAway(assigned={TP0, TP1}, ends={TP0: 5, TP1: 5})
    runner = AsyncRunner()
    worker = Worker(WorkerSettings(), consumer, FakeProducer(), FakeFetcher({}), runner,
                    FakeModels(FakeClassifier()))
    threading.Timer(0.3, worker.stop).start()
    began = time.monotonic()
    try:
        worker.run(exit_when_idle=0.0)
    finally:
        runner.close()
    assert time.monotonic() - began < 4  # one bounded position query per lag check
    assert worker.exit_code == 0
