"""A new model version appears under a steady stream; health, readiness and metrics of a live worker;
running workers follow the serving pointer (promote, rollback) and honour a pin."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from demo.broker import create_topics, free_port
from demo.tmdb import StandInMovie
from tests.fixtures import (
    COLOURS,
    Topics,
    build_tiny_model,
    consume_all,
    event,
    poster_bytes,
    produce,
    start_worker,
    worker_env,
)

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_for(predicate, timeout: float = 60.0, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one series, or the sum over every series of `name` when no labels are given."""
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{[^}]*\})?")
    return sum(float(m.group(1)) for m in re.finditer(pattern + r" ([0-9.e+-]+)", text))


def test_versions_switch_mid_stream_without_loss_and_a_broken_one_is_refused(
    broker, topics, tmdb, tmp_path
):
    model_dir = tmp_path / "models"
    build_tiny_model(model_dir)
    total = 150
    for tmdb_id in range(1, total + 1):
        tmdb.movies[tmdb_id] = StandInMovie(poster_bytes(COLOURS["Red"]))
    tmdb.movies[total + 1] = StandInMovie(None)  # one dead letter, for the metrics
    port = free_port()
    env = worker_env(
        broker, topics, model_dir, tmdb, MODEL_POLL_S="0.3", HTTP_PORT=str(port), BATCH_SIZE="5"
    )
    process = start_worker(env)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: get(f"{base}/healthz")[0] == 200, timeout=60)
        assert wait_for(lambda: get(f"{base}/readyz")[0] == 200, timeout=60), get(f"{base}/readyz")

        def stream() -> None:
            for tmdb_id in range(1, total + 1):
                produce(broker.bootstrap_servers, topics.input, [event(tmdb_id)])
                time.sleep(0.04)
            produce(broker.bootstrap_servers, topics.input, [event(total + 1)])

        producer = threading.Thread(target=stream)
        producer.start()
        assert wait_for(
            lambda: metric(get(f"{base}/metrics")[1], "genre_worker_outputs_produced_total") >= 30
        )
        build_tiny_model(model_dir, bias=-2.0)  # version 2 scores differently
        assert wait_for(
            lambda: metric(get(f"{base}/metrics")[1], "genre_worker_model_version") == 2
        )
        broken = build_tiny_model(model_dir)
        meta = json.loads((broken / "metadata.json").read_text())
        meta["labels"], meta["thresholds"] = meta["labels"] + ["Extra"], meta["thresholds"] + [0.5]
        (broken / "metadata.json").write_text(json.dumps(meta))
        assert wait_for(
            lambda: (
                metric(
                    get(f"{base}/metrics")[1],
                    "genre_worker_model_reloads_total",
                    'outcome="refused"',
                )
                == 1
            )
        )
        producer.join()

        def all_done() -> bool:
            text = get(f"{base}/metrics")[1]
            return (
                metric(text, "genre_worker_outputs_produced_total") >= total
                and metric(text, "genre_worker_dead_letters_total", 'code="poster_not_found"') >= 1
            )

        assert wait_for(all_done, timeout=90)
        text = get(f"{base}/metrics")[1]
        assert get(f"{base}/readyz")[0] == 200
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=60)
    shutil.rmtree(broken)
    assert process.returncode == 0, out[-3000:]

    outputs = consume_all(broker.bootstrap_servers, topics.output, total, timeout_s=20)
    ids = [o["tmdb_id"] for o in outputs]
    assert sorted(ids) == list(range(1, total + 1)), (
        "every input ends exactly once across the switch"
    )
    versions = [o["model_version"] for o in sorted(outputs, key=lambda o: o["classified_at"])]
    switch = versions.index(2)
    assert set(versions[:switch]) == {1} and set(versions[switch:]) == {2}, (
        "no output goes back to version 1"
    )
    assert 0 < switch < total
    for o in outputs:  # each output carries the scores of the version that produced it
        green = o["scores"]["Green"]  # about 0.04 from version 1, 0.23 from version 2
        assert (green > 0.15) if o["model_version"] == 2 else (green < 0.1)
    assert metric(text, "genre_worker_model_version") == 2
    assert metric(text, "genre_worker_events_consumed_total") == total + 1
    assert metric(text, "genre_worker_outputs_produced_total") == total
    by_version = [
        metric(text, "genre_worker_outputs_produced_total", f'model_version="{v}"') for v in (1, 2)
    ]
    assert all(n > 0 for n in by_version) and sum(by_version) == total
    assert metric(text, "genre_worker_dead_letters_total", 'code="poster_not_found"') == 1
    assert metric(text, "genre_worker_model_reloads_total", 'outcome="loaded"') == 1
    assert "refused model version 3" in out
    # the heap frozen at start, and thawed, collected (version 1 freed) and frozen at the swap
    assert "started: " in out and "serving model version 2: " in out
    assert out.count("objects frozen out of the garbage collector's passes") == 2


def genre_trainer(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `genre-trainer ARGS` as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "poster_genres.trainer", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_running_workers_follow_promote_and_rollback_honour_a_pin_and_outlive_a_bad_pointer(
    broker, topics, tmdb, tmp_path
):
    model_dir = tmp_path / "models"
    build_tiny_model(model_dir)  # version 1
    build_tiny_model(model_dir, bias=-2.0)  # version 2, the highest: served while no pointer
    for tmdb_id in range(1, 6):
        tmdb.movies[tmdb_id] = StandInMovie(poster_bytes(COLOURS["Green"]))
    pinned_topics = Topics(
        topics.input + ".pin", topics.output + ".pin", topics.dlq + ".pin", topics.group + "-pin"
    )
    create_topics(
        broker.bootstrap_servers,
        {pinned_topics.input: 1, pinned_topics.output: 1, pinned_topics.dlq: 1},
    )
    port, pinned_port = free_port(), free_port()
    worker = start_worker(
        worker_env(broker, topics, model_dir, tmdb, MODEL_POLL_S="0.3", HTTP_PORT=str(port))
    )
    pinned = start_worker(
        worker_env(
            broker,
            pinned_topics,
            model_dir,
            tmdb,
            MODEL_POLL_S="0.3",
            HTTP_PORT=str(pinned_port),
            MODEL_VERSION="1",
        )
    )
    base, pinned_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{pinned_port}"

    def serving(url: str) -> float:
        return metric(get(f"{url}/metrics")[1], "genre_worker_model_version")

    def classify(tmdb_id: int, url: str = base, topic: str = topics.input) -> None:
        """Send one event and wait until its output is acknowledged."""
        before = metric(get(f"{url}/metrics")[1], "genre_worker_outputs_produced_total")
        produce(broker.bootstrap_servers, topic, [event(tmdb_id)])
        assert wait_for(
            lambda: metric(get(f"{url}/metrics")[1], "genre_worker_outputs_produced_total") > before
        )

    try:
        for url in (base, pinned_base):
            assert wait_for(lambda url=url: get(f"{url}/readyz")[0] == 200, timeout=90)
        assert serving(base) == 2 and serving(pinned_base) == 1
        classify(1)
        assert genre_trainer("rollback", "--model-dir", str(model_dir)).returncode == 0
        assert wait_for(lambda: serving(base) == 1)  # a lower version: no restart
        classify(2)
        assert genre_trainer("promote", "2", "--model-dir", str(model_dir)).returncode == 0
        assert wait_for(lambda: serving(base) == 2)
        classify(3)
        classify(5, pinned_base, pinned_topics.input)  # the pointer says 2; the pin says 1
        (model_dir / "serving.json").write_text(  # names a version that is not there
            '{"version": 9, "previous": [2, 1], "updated_at": "2026-01-01T00:00:00Z"}'
        )
        assert wait_for(
            lambda: metric(get(f"{base}/metrics")[1], "genre_worker_model_wanted_version") == 9
        )
        time.sleep(1.5)  # several polls
        classify(4)
        text = get(f"{base}/metrics")[1]
        assert metric(text, "genre_worker_model_pointer_errors_total") == 1
        assert serving(base) == 2 and get(f"{base}/readyz")[0] == 200
        info = json.loads(get(f"{base}/model")[1])
        assert (info["version"], info["wanted_version"], info["pinned"]) == (2, 9, False)
        assert json.loads(get(f"{pinned_base}/model")[1])["pinned"] is True
    finally:
        for process in (worker, pinned):
            process.terminate()
        out, _ = worker.communicate(timeout=60)
        pinned.communicate(timeout=60)
    assert worker.returncode == 0, out[-3000:]
    assert out.count("names model version 9") == 1, "one line, not one per poll"

    outputs = {
        o["tmdb_id"]: o["model_version"]
        for o in consume_all(broker.bootstrap_servers, topics.output, 4, timeout_s=20)
    }
    assert outputs == {1: 2, 2: 1, 3: 2, 4: 2}
    (pinned_output,) = consume_all(broker.bootstrap_servers, pinned_topics.output, 1, timeout_s=20)
    assert pinned_output["model_version"] == 1
