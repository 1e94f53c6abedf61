"""Freezing the worker's start-up objects out of the garbage collector (`worker/heap.py`)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from poster_genres.worker import heap


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    heap.thaw()  # the test process's heap is given back to the collector


def test_what_is_garbage_is_collected_and_what_lives_is_frozen() -> None:
    garbage, alive = Node(), Node()
    freed = weakref.ref(garbage)
    del garbage
    heap.freeze("test")
    assert freed() is None  # collected first: not kept forever
    assert gc.get_freeze_count() > 0
    assert not any(o is alive for o in gc.get_objects(generation=2))  # frozen: never walked
    heap.thaw()
    assert gc.get_freeze_count() == 0


def test_a_frozen_cycle_let_go_is_freed_by_the_next_freeze() -> None:
    old_model = Node()
    freed = weakref.ref(old_model)
    heap.freeze("start")
    del old_model  # the swap drops it: a frozen cycle, which no pass will walk
    gc.collect()
    assert freed() is not None
    heap.freeze("serving the new version")
    assert freed() is None
