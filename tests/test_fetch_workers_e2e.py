"""End to end with FETCH_WORKERS=2: every event ends once, a killed fetch process loses none,
and no fetch process outlives the worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from demo.tmdb import StandInMovie
from tests.conftest import (
    COLOURS,
    consume_all,
    event,
    finish,
    poster_bytes,
    produce,
    start_worker,
    stop,
    worker_env,
)

pytestmark = pytest.mark.slow


def fetch_processes(pid: int) -> list[int]:
    """Child processes of `pid` that are multiprocessing spawns (the fetch processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for child in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except FileNotFoundError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def wait_for_fetch_processes(pid: int, count: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fetch_processes(pid)
        if len(found) >= count:
            return found
        time.sleep(0.2)
    pytest.fail(f"the worker did not start {count} fetch processes")


def test_a_killed_fetch_process_loses_no_event_and_none_outlives_the_worker(
    broker, topics, model_dir, tmdb
):
    ids = range(1, 41)
    for tmdb_id in ids:  # every third poster waits out a 429: posters are in flight for ~1 s
        failures = [429] if tmdb_id % 3 == 0 else []
        tmdb.movies[tmdb_id] = StandInMovie(
            poster_bytes(COLOURS["Red"]), page_failures=failures, retry_after="1"
        )
    env = worker_env(broker, topics, model_dir, tmdb, FETCH_WORKERS="2", BATCH_SIZE="4")
    process = start_worker(env, "--exit-when-idle", "4")
    first = wait_for_fetch_processes(process.pid, 2)
    produce(broker.bootstrap_servers, topics.input, [event(i) for i in ids])
    consume_all(broker.bootstrap_servers, topics.output, 4, timeout_s=60)
    os.kill(first[0], signal.SIGKILL)
    out = finish(process)
    outputs = consume_all(broker.bootstrap_servers, topics.output, len(ids), timeout_s=20)
    letters = consume_all(broker.bootstrap_servers, topics.dlq, 1, timeout_s=2)
    assert process.returncode == 0, out[-3000:]
    assert "fetching posters in 2 processes" in out
    assert "ended with exit code -9" in out, out[-3000:]
    assert sorted(o["tmdb_id"] for o in outputs) == list(ids), out[-3000:]
    assert letters == []
    assert not any(alive(pid) for pid in first)


def test_sigterm_ends_the_fetch_processes_with_the_worker(broker, topics, model_dir, tmdb):
    for tmdb_id in range(1, 21):
        tmdb.movies[tmdb_id] = StandInMovie(poster_bytes(COLOURS["Blue"]))
    produce(broker.bootstrap_servers, topics.input, [event(i) for i in range(1, 21)])
    env = worker_env(broker, topics, model_dir, tmdb, FETCH_WORKERS="2", BATCH_SIZE="4")
    process = start_worker(env)
    children = wait_for_fetch_processes(process.pid, 2)
    consume_all(broker.bootstrap_servers, topics.output, 4, timeout_s=60)
    out = stop(process)
    assert process.returncode == 0, out[-3000:]
    assert "worker stopped" in out
    assert not any(alive(pid) for pid in children), "a fetch process outlived the worker"
