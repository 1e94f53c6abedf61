"""The worker as a member of its consumer group: lag queries, rebalances and commits."""

from __future__ import annotations

import threading
import time

from kafka import TopicPartition

from poster_genres.worker.fetching import AsyncRunner
from poster_genres.worker.loop import Worker
from poster_genres.worker.partitions import drained, lag
from poster_genres.worker.settings import WorkerSettings
from tests.fakes import (
    FakeClassifier,
    FakeConsumer,
    FakeFetcher,
    FakeModels,
    FakeProducer,
    event_record,
    poster,
)

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
    worker = Worker(
        WorkerSettings(),
        consumer,
        FakeProducer(),
        FakeFetcher({}),
        runner,
        FakeModels(FakeClassifier()),
    )
    threading.Timer(0.3, worker.stop).start()
    began = time.monotonic()
    try:
        worker.run(exit_when_idle=0.0)
    finally:
        runner.close()
    assert time.monotonic() - began < 4  # one bounded position query per lag check
    assert worker.exit_code == 0


class RebalancingFetcher(FakeFetcher):
    """While a poster downloads, the group takes a partition away and gives it back."""

    def __init__(self, answers, during_fetch):
        super().__init__(answers)
        self.during_fetch = during_fetch

    async def fetch(self, tmdb_id: int):
        self.during_fetch()
        return await super().fetch(tmdb_id)


def run_with_rebalance(rebalances: bool) -> tuple[Worker, list[dict]]:
    """Poll a batch of TP0 and TP1; maybe move TP0 A -> B -> A while it is fetched; finish it."""
    consumer = FakeConsumer(
        assigned={TP0, TP1},
        polls=[[event_record(0, 1, partition=0), event_record(0, 2, partition=1)]],
        ends={TP0: 1, TP1: 1},
    )
    runner = AsyncRunner()
    worker: Worker
    done: list[bool] = []

    def rebalance() -> None:  # eager protocol, as kafka-python's IO thread calls the listener
        if done or not rebalances:
            return
        done.append(True)
        worker.on_partitions_revoked({TP0, TP1})
        consumer.assigned = {TP1}
        worker.on_partitions_assigned({TP1})  # B joined and got TP0
        worker.on_partitions_revoked({TP1})
        consumer.assigned = {TP0, TP1}
        worker.on_partitions_assigned({TP0, TP1})  # B left: TP0 is back

    fetcher = RebalancingFetcher({1: poster(1), 2: poster(2)}, rebalance)
    worker = Worker(
        WorkerSettings(batch_linger_ms=0),
        consumer,
        FakeProducer(),
        fetcher,
        runner,
        FakeModels(FakeClassifier()),
    )
    worker.on_partitions_assigned({TP0, TP1})
    try:
        worker.run(exit_when_idle=0.0)
    finally:
        runner.close()
    return worker, consumer.commits


def test_a_batch_whose_partitions_were_reassigned_while_it_ran_is_not_committed(caplog):
    caplog.set_level("INFO", logger="poster_genres.worker.partitions")
    worker, commits = run_with_rebalance(rebalances=True)
    assert worker.assignments.count == 3
    assert TP0 in worker.consumer.assignment()  # owned again, but not the owner that polled
    assert commits == []
    assert "reassigned since the batch was polled" in caplog.text

    worker, commits = run_with_rebalance(rebalances=False)
    assert [{tp: c.offset for tp, c in commit.items()} for commit in commits] == [{TP0: 1, TP1: 1}]


def test_partitions_kept_through_rebalances_are_committed_under_a_cooperative_style_listener():
    worker = Worker(
        WorkerSettings(),
        FakeConsumer(assigned={TP0, TP1}),
        FakeProducer(),
        FakeFetcher({}),
        AsyncRunner(),
        FakeModels(FakeClassifier()),
    )
    worker.on_partitions_assigned({TP0, TP1})
    polled = worker.assignments.generations({TP0, TP1})
    worker.on_partitions_assigned({TopicPartition("movies.new", 2)})  # only additions
    assert worker.assignments.current({TP0: 5, TP1: 7}, polled) == {TP0: 5, TP1: 7}
    worker.on_partitions_revoked({TP1})
    worker.on_partitions_assigned({TP1})
    assert worker.assignments.current({TP0: 5, TP1: 7}, polled) == {TP0: 5}
    worker.downloads.runner.close()


def test_the_consumer_reads_only_committed_records(broker):
    """Records of aborted transactions are skipped by the client (isolation_level).

    Tansu accepts transactions but hands aborted records to read_committed consumers too
    (checked by hand: no aborted-transaction list in its fetch answers), so only the
    consumer's configuration can be tested here.
    """
    from poster_genres.worker.clients import build_consumer

    settings = WorkerSettings(kafka_bootstrap_servers=broker.bootstrap_servers, group_id="g-iso")
    consumer = build_consumer(settings)
    try:
        assert consumer.config["isolation_level"] == "read_committed"
        assert consumer.config["enable_auto_commit"] is False
        assert consumer.config["fetch_max_wait_ms"] == 100  # FETCH_MAX_WAIT_MS, not 500
    finally:
        consumer.close()
