"""Pytest fixtures: the embedded broker, fresh topics, a TMDB stand-in, a tiny model, the fetch
loop. The helpers they are made of, and that tests import, are in `tests/fixtures.py`."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from demo.broker import EmbeddedBroker, create_topics
from demo.tmdb import TmdbStandIn
from tests.fixtures import Topics, build_tiny_model

if TYPE_CHECKING:
    from poster_genres.worker.fetching import AsyncRunner


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    build_tiny_model(path)
    return path


@pytest.fixture
def tmdb() -> Iterator[TmdbStandIn]:
    with TmdbStandIn() as server:
        yield server


@pytest.fixture
def runner() -> Iterator[AsyncRunner]:
    """The worker's asyncio loop on its thread, closed after the test."""
    from poster_genres.worker.fetching import AsyncRunner

    running = AsyncRunner()
    yield running
    running.close()


@pytest.fixture
def topics(broker: EmbeddedBroker) -> Topics:
    """Fresh topic names (and group) per test, so tests sharing the broker do not meet."""
    suffix = uuid.uuid4().hex[:8]
    names = Topics(
        f"movies.new.{suffix}", f"movies.genres.{suffix}", f"movies.new.dlq.{suffix}", f"g-{suffix}"
    )
    create_topics(broker.bootstrap_servers, {names.input: 2, names.output: 1, names.dlq: 1})
    return names
