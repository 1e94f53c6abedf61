"""The rate limits are the group's: each member paces at its share of the input partitions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from kafka import KafkaConsumer

from poster_genres.posters import PosterFetcher
from poster_genres.posters.policy.pacing import HostPacer, TokenBucket
from poster_genres.posters.settings import FetchSettings
from poster_genres.worker.app import WorkerListener
from poster_genres.worker.budget import GroupBudget, group_share, pace_on, pacing_share
from poster_genres.worker.clients import build_consumer
from poster_genres.worker.fetching import AsyncRunner
from poster_genres.worker.loop import Worker
from poster_genres.worker.membership import Membership
from poster_genres.worker.metrics import WorkerMetrics
from poster_genres.worker.settings import WorkerSettings
from tests.fakes import FakeClassifier, FakeModels, FakeProducer
from tests.fixtures import member_settings

SITE = "https://www.themoviedb.org/movie/603"
IMAGE = "https://image.tmdb.org/t/p/w342/a.jpg"


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def granted_within(pacer: HostPacer, url: str, clock: Clock, seconds: float) -> int:
    """Requests `pacer` lets out within `seconds` to a client that always has one to send."""
    sent, due = 0, clock.now
    end = clock.now + seconds
    while True:
        clock.now = due
        due = clock.now + pacer.reserve(url)
        if due >= end:
            return sent
        sent += 1


@pytest.mark.parametrize(
    ("assigned", "total", "share"),
    [(2, 6, 1 / 3), (4, 4, 1.0), (0, 4, 0.0), (1, 3, 1 / 3), (3, 0, 1.0), (0, 0, 0.0)],
)
def test_a_members_share_is_its_share_of_the_partitions(assigned, total, share):
    assert group_share(assigned, total) == pytest.approx(share)


@pytest.mark.parametrize(("members", "partitions"), [(3, 6), (3, 4), (3, 2), (10, 12), (1, 1)])
def test_the_shares_of_a_group_add_up_to_the_whole_budget(members, partitions):
    held = [len(range(m, partitions, members)) for m in range(members)]  # any division
    assert sum(group_share(n, partitions) for n in held) == pytest.approx(1.0)


def test_a_standby_paces_what_it_has_in_hand_at_one_partitions_share():
    assert pacing_share(0, 4) == 0.25  # its share is 0: it polls nothing new
    assert pacing_share(2, 4) == 0.5
    assert pacing_share(0, 0) == 1.0  # no metadata yet, nothing polled: no constraint
    with pytest.raises(ValueError):
        HostPacer(FetchSettings()).set_share(0)


def test_the_pacer_scales_every_limit_and_the_burst_by_its_share():
    clock = Clock()
    pacer = HostPacer(FetchSettings(site_rate_limit=20, image_rate_limit=100), clock)
    assert pacer.rate(SITE) == 20 and pacer.rate(IMAGE) == 100  # alone (the trainer): 1
    pacer.set_share(1 / 4)
    assert pacer.rate(SITE) == 5 and pacer.rate(IMAGE) == 25
    # burst 5 x 1/4 is 1.25 tokens: one request at once, then one every 1/5 s
    assert [pacer.reserve(SITE) for _ in range(3)] == pytest.approx([0, 0.15, 0.35])
    assert granted_within(pacer, IMAGE, clock, 10) == pytest.approx(25 * 10, abs=2)


def test_a_tiny_share_still_bursts_one_request():
    pacer = HostPacer(FetchSettings(site_rate_limit=20, rate_limit_burst=5), Clock())
    pacer.set_share(1 / 12)
    assert pacer.reserve(SITE) == 0  # burst 5/12 rounds up to one request
    assert pacer.reserve(SITE) == pytest.approx(1 / (20 / 12))


def test_a_share_change_applies_to_buckets_already_in_use():
    clock = Clock()
    bucket = TokenBucket(rate=20, burst=5, clock=clock)
    for _ in range(5):
        bucket.reserve()  # the burst, spent
    bucket.set_rate(5, 1.25)
    assert bucket.reserve() == pytest.approx(0.2)  # the next token at the new rate
    clock.now += 60  # a quiet minute saves up only the new burst
    assert [bucket.reserve() > 0 for _ in range(3)] == [False, True, True]


def test_three_members_together_stay_within_the_groups_budget():
    settings = FetchSettings(site_rate_limit=20, rate_limit_burst=5)
    members = [(HostPacer(settings, clock), clock) for clock in (Clock(), Clock(), Clock())]
    for (pacer, _), held in zip(members, (1, 2, 3)):
        pacer.set_share(pacing_share(held, 6))
    sent = sum(granted_within(pacer, SITE, clock, 30) for pacer, clock in members)
    assert 20 * 30 <= sent <= 20 * 30 + 5  # the group's rate, the group's burst


@dataclass
class Topic:
    """A consumer's view of the input topic, for `GroupBudget`."""

    partitions: set[int] = field(default_factory=lambda: {0, 1, 2, 3})

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_the_budget_sets_the_metric_and_the_pacer_once_per_change():
    metrics, applied = WorkerMetrics(), []
    budget = GroupBudget("movies.new", Topic(), metrics, applied.append)
    assert budget.update(2) == 0.5
    assert budget.update(2) == 0.5  # a rebalance that changed nothing
    assert budget.update(0) == 0.0
    assert applied == [0.5, 0.25]
    assert "genre_worker_rate_budget_share 0.0" in metrics.render().decode()
    assert budget.update(4) == 1.0 and applied[-1] == 1.0


def test_the_pacer_share_is_set_on_the_fetch_loop(runner):
    pacer = HostPacer(FetchSettings())
    on_loop = []
    original = pacer.set_share

    def record(share: float) -> None:
        on_loop.append(threading.current_thread().name)
        original(share)

    pacer.set_share = record  # type: ignore[method-assign]
    pace_on(runner, pacer)(0.5)
    runner.run(_nothing())  # the loop has run what was scheduled before
    assert on_loop == ["fetch-loop"] and pacer.share == 0.5


async def _nothing() -> None:
    return None


# -- with the real broker: the share follows the group's assignments ----------------------


@dataclass
class Member:
    """A worker with a real consumer and a real fetcher's pacer, on its own thread."""

    worker: Worker
    fetcher: PosterFetcher
    runner: AsyncRunner
    thread: threading.Thread

    def site_rate(self) -> float:
        return self.fetcher.pacer.rate(self.fetcher.settings.tmdb_base_url)

    def share(self) -> float:
        value = self.worker.metrics.registry.get_sample_value("genre_worker_rate_budget_share")
        assert value is not None
        return value

    def leave(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=30)
        self.worker.consumer.close(autocommit=False)
        self.runner.run(self.fetcher.aclose())
        self.runner.close()


def join(broker, topics) -> Member:
    settings = member_settings(broker, topics, site_rate_limit=20)
    runner = AsyncRunner()
    fetcher = runner.run(_fetcher(settings))
    consumer: KafkaConsumer = build_consumer(settings)
    worker = Worker(
        settings, consumer, FakeProducer(), fetcher, runner, FakeModels(FakeClassifier())
    )
    budget = GroupBudget(topics.input, consumer, worker.metrics, pace_on(runner, fetcher.pacer))
    worker.group = Membership(budget)
    consumer.subscribe([topics.input], listener=WorkerListener(worker))
    thread = threading.Thread(target=worker.run, name="member", daemon=True)
    thread.start()
    return Member(worker, fetcher, runner, thread)


async def _fetcher(settings: WorkerSettings) -> PosterFetcher:
    return PosterFetcher(settings)


def settle(members: list[Member], shares: list[float], timeout_s: float = 60) -> list[float]:
    """Wait until the members' shares are `shares` (in some order); their site rates."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sorted(m.share() for m in members) == sorted(shares):
            time.sleep(0.2)  # the pacers' shares are set on their loops
            return sorted(m.site_rate() for m in members)
        time.sleep(0.1)
    pytest.fail(f"shares {[m.share() for m in members]}, not {shares}")


@pytest.fixture
def group(broker, topics) -> Iterator[list[Member]]:
    members: list[Member] = []
    yield members
    for member in members:
        if member.thread.is_alive():
            member.leave()


def test_a_pacers_rate_follows_the_groups_assignments(broker, topics, group):
    group.append(join(broker, topics))  # the input topic has 2 partitions
    assert settle(group, [1.0]) == [20.0]
    group.append(join(broker, topics))
    assert settle(group, [0.5, 0.5]) == [10.0, 10.0]
    group.append(join(broker, topics))  # one member too many: a standby
    assert settle(group, [0.0, 0.5, 0.5]) == [10.0, 10.0, 10.0]  # the standby at one's share
    # the first member leads the group: the others leave (a leader leaving a forming group
    # wedges this broker, see tests/system/test_standby.py)
    owner = next(m for m in group[1:] if m.share() > 0)
    owner.leave()
    group.remove(owner)
    assert settle(group, [0.5, 0.5]) == [10.0, 10.0]  # the standby took the partition over
    group.pop(1).leave()
    assert settle(group, [1.0]) == [20.0]
