"""A group nobody consumes is noticed: a standby that sees the input wait with no commit.

The integration test wedges the embedded broker (Tansu 0.6) the way the investigation found
it: the group's leader leaves while the group is forming, its member id stays the leader,
no remaining member is told to assign, and every SyncGroup answers REBALANCE_IN_PROGRESS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from kafka import KafkaConsumer

from poster_genres.worker.app import WorkerListener
from poster_genres.worker.clients import build_consumer
from poster_genres.worker.fetching import AsyncRunner
from poster_genres.worker.loop import Worker, readiness
from poster_genres.worker.membership import Membership
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.standby import GroupProgress, StandbyWatch, read_progress
from tests.fakes import (
    FakeClassifier,
    FakeConsumer,
    FakeFetcher,
    FakeModels,
    FakeProducer,
    poster,
)
from tests.fixtures import event, member_settings, produce

STALL_S = 2.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Group:
    """A scripted view of the group's progress, and the rejoins asked of it."""

    committed: dict[int, int | None]
    ends: dict[int, int]
    rejoins: int = 0

    def read(self) -> GroupProgress:
        return GroupProgress(dict(self.committed), dict(self.ends), dict.fromkeys(self.ends, 0))

    def rejoin(self) -> None:
        self.rejoins += 1


def watch_on(group: Group, clock: Clock) -> tuple[StandbyWatch, WorkerMetrics]:
    metrics = WorkerMetrics()
    return StandbyWatch(60, group.read, group.rejoin, metrics, clock), metrics


def stalled_gauge(metrics: WorkerMetrics) -> float | None:
    return metrics.registry.get_sample_value("genre_worker_standby_stalled")


def test_a_standby_rejoins_when_records_wait_and_no_commit_moves():
    clock, group = Clock(), Group({0: 10, 1: None}, {0: 50, 1: 5})
    watch, metrics = watch_on(group, clock)
    for now in (0, 30, 59):
        clock.now = now
        watch.check(assigned=0)
    assert group.rejoins == 0 and watch.stalled is None
    clock.now = 60
    watch.check(assigned=0)
    assert group.rejoins == 1
    assert watch.stalled is not None and "45 records wait" in watch.stalled
    assert stalled_gauge(metrics) == 1
    assert metrics.registry.get_sample_value("genre_worker_group_rejoins_total") == 1
    clock.now = 100
    watch.check(assigned=0)
    assert group.rejoins == 1  # the rejoin gets a whole period to work
    clock.now = 120
    watch.check(assigned=0)
    assert group.rejoins == 2


def test_progress_or_partitions_end_the_stall():
    clock, group = Clock(), Group({0: 10}, {0: 50})
    watch, metrics = watch_on(group, clock)
    watch.check(assigned=0)
    clock.now = 60
    watch.check(assigned=0)
    assert watch.stalled is not None
    group.committed[0] = 11  # an owner commits again
    watch.check(assigned=0)
    assert watch.stalled is None and stalled_gauge(metrics) == 0
    clock.now = 119
    watch.check(assigned=0)
    assert group.rejoins == 1  # the period counts from the last progress
    clock.now = 200
    watch.check(assigned=1)  # this member got partitions: nothing to watch
    assert group.rejoins == 1 and watch.stalled is None


def test_a_standby_of_a_drained_group_is_not_stalled():
    clock, group = Clock(), Group({0: 50, 1: 5}, {0: 50, 1: 5})
    watch, _ = watch_on(group, clock)
    for now in (0, 100, 1000):
        clock.now = now
        watch.check(assigned=0)
    assert group.rejoins == 0 and watch.stalled is None


def test_no_answer_from_the_broker_is_no_verdict():
    clock = Clock()
    rejoins: list[int] = []
    watch = StandbyWatch(1, lambda: None, lambda: rejoins.append(1), WorkerMetrics(), clock)
    for now in (0, 10, 100):
        clock.now = now
        watch.check(assigned=0)
    assert rejoins == [] and watch.stalled is None


def test_zero_turns_the_watch_off():
    group = Group({0: 0}, {0: 100})
    watch = StandbyWatch(0, group.read, group.rejoin, WorkerMetrics(), Clock())
    watch.check(assigned=0)
    assert group.rejoins == 0


def test_a_stalled_standby_is_not_ready():
    models = FakeModels(FakeClassifier())
    consumer = FakeConsumer(generation=3)
    assert readiness(consumer, models, "g", None) == (
        True,
        "model version 1, generation 3, 0 partitions (standby)",
    )
    why = "standby while 3904 records wait with no commit for 300 s: rejoining"
    assert readiness(consumer, models, "g", why) == (False, why)


# -- with the real broker -------------------------------------------------------------------


class Member:
    """A plain consumer of the group on a thread: polls, and commits what it read if asked."""

    def __init__(self, bootstrap: str, topic: str, group: str, commit_per_s: float = 0):
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=1,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_poll_interval_ms=10000,
        )
        self.consumer.subscribe([topic])
        self.commit_per_s = commit_per_s
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            polled = self.consumer.poll(timeout_ms=100)
            if polled and self.commit_per_s:
                self.consumer.commit()
                time.sleep(1 / self.commit_per_s)

    def held(self) -> int:
        return len(self.consumer.assignment())

    def leave(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)
        self.consumer.close(autocommit=False)


@dataclass
class Watched:
    """A worker with a real consumer and the standby watch, running on a thread."""

    worker: Worker
    runner: AsyncRunner
    thread: threading.Thread

    def held(self) -> int:
        return self.worker.assignments.held

    def leave(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        self.worker.consumer.close(autocommit=False)
        self.runner.close()


def watched_worker(broker, topics) -> Watched:
    settings = member_settings(broker, topics, standby_stall_s=STALL_S)
    runner = AsyncRunner()
    consumer = build_consumer(settings)
    worker = Worker(
        settings,
        consumer,
        FakeProducer(),
        FakeFetcher({i: poster(i) for i in range(1, 401)}),
        runner,
        FakeModels(FakeClassifier()),
    )
    listener = WorkerListener(worker)

    def rejoin() -> None:
        consumer.unsubscribe()
        consumer.subscribe([topics.input], listener=listener)

    worker.group = Membership(
        standby=StandbyWatch(
            STALL_S, lambda: read_progress(consumer, topics.input), rejoin, worker.metrics
        )
    )
    consumer.subscribe([topics.input], listener=listener)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return Watched(worker, runner, thread)


def wait_for(condition, timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def members() -> Iterator[list]:
    running: list = []
    yield running
    for member in running:
        member.leave()


def wedge(broker, topics, members: list) -> Watched | None:
    """Three members, then the leader leaves at once; the watched worker if the group wedged."""
    leader = Member(broker.bootstrap_servers, topics.input, topics.group)
    wait_for(lambda: leader.held() == 2, what="the leader's assignment")
    watched = watched_worker(broker, topics)
    members.append(watched)
    wait_for(lambda: leader.held() == 1 and watched.held() == 1, what="two members")
    third = Member(broker.bootstrap_servers, topics.input, topics.group)
    members.append(third)
    wait_for(lambda: sorted([leader.held(), watched.held(), third.held()]) == [0, 1, 1])
    leader.leave()  # at once, while the group settles
    time.sleep(10)  # a healthy group has divided the partitions again by now
    return watched if watched.held() == third.held() == 0 else None


def test_a_group_wedged_by_its_leader_leaving_is_noticed(broker, topics, members):
    for attempt in range(5):  # the leave must land while the group settles: mostly the first
        watched = wedge(broker, replace(topics, group=f"{topics.group}-{attempt}"), members)
        if watched is not None:
            break
    else:
        pytest.fail("the group recovered five times: has the broker's coordinator changed?")
    produce(broker.bootstrap_servers, topics.input, [event(i) for i in range(1, 21)])
    wait_for(lambda: watched.worker.group.stalled is not None, 60, "the stall to be noticed")
    ok, why = watched.worker.ready()
    assert not ok and "records wait with no commit" in why
    assert watched.held() == 0
    metrics = watched.worker.metrics.registry
    assert metrics.get_sample_value("genre_worker_standby_stalled") == 1
    assert metrics.get_sample_value("genre_worker_group_rejoins_total") >= 1


def test_a_standby_beside_owners_that_commit_stays_quiet(broker, topics, members):
    produce(broker.bootstrap_servers, topics.input, [event(i) for i in range(1, 401)])
    for _ in range(2):
        members.append(Member(broker.bootstrap_servers, topics.input, topics.group, 4))
    wait_for(lambda: sorted(m.held() for m in members) == [1, 1], what="two owners")
    watched = watched_worker(broker, topics)
    members.append(watched)
    wait_for(lambda: watched.worker.ready()[0] and watched.held() == 0, what="a standby")
    time.sleep(3 * STALL_S + 5)  # a standby's checks come every few seconds
    assert watched.worker.group.stalled is None and watched.worker.ready()[0]
    progress = read_progress(watched.worker.consumer, topics.input)
    assert progress is not None
    assert 0 < sum(n or 0 for n in progress.committed.values()) < 400  # the owners are at it
    assert watched.worker.metrics.registry.get_sample_value("genre_worker_group_rejoins_total") == 0
