"""Version numbers are never reused: a lock and a high-water mark in MODEL_DIR."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from poster_genres.schemas.model import complete_versions
from poster_genres.trainer.export import REPORTS_DIR, prune_versions
from poster_genres.trainer.versions import MARK_FILE, publish_version, read_mark

SPAWN = multiprocessing.get_context("spawn")  # no fork of a process that may hold TensorFlow


def ready_folder(model_dir: Path, tag: str) -> Path:
    """A finished, not yet numbered version folder holding `tag`."""
    folder = model_dir / f".tmp-{uuid.uuid4().hex}"
    folder.mkdir()
    (folder / "tag").write_text(tag)
    return folder


def publish_many(model_dir: Path, tag: str, n: int, start: Any, out: Any) -> None:
    """Child process: wait for the others, then publish `n` folders; report their numbers."""
    start.wait()
    out.put(
        (
            tag,
            [int(publish_version(ready_folder(model_dir, tag), model_dir).name) for _ in range(n)],
        )
    )


def export_two(model_dir: Path, start: Any, out: Any) -> None:
    """Child process: export two tiny models with the real exporter; report their numbers."""
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from tests.fixtures import build_tiny_model

    start.wait()
    out.put([int(build_tiny_model(model_dir).name) for _ in range(2)])


def run_at_once(target: Any, args: list[tuple[Any, ...]], timeout: float) -> list[Any]:
    """Start one process per argument tuple, released together; their reports."""
    start, out = SPAWN.Barrier(len(args)), SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*a, start, out)) for a in args]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(timeout)
        assert proc.exitcode == 0
    return results


def test_processes_publishing_at_once_get_distinct_numbers(tmp_path: Path) -> None:
    results = dict(run_at_once(publish_many, [(tmp_path, "a", 40), (tmp_path, "b", 40)], 120))
    numbers = results["a"] + results["b"]
    assert sorted(numbers) == list(range(1, 81))
    for tag, mine in results.items():
        assert mine == sorted(mine)  # each process sees its numbers grow
        assert all((tmp_path / str(n) / "tag").read_text() == tag for n in mine)
    assert read_mark(tmp_path) == 81
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_exporters_running_at_once_get_distinct_versions(tmp_path: Path) -> None:
    numbers = [n for got in run_at_once(export_two, [(tmp_path,), (tmp_path,)], 300) for n in got]
    assert sorted(numbers) == [1, 2, 3, 4]
    assert complete_versions(tmp_path) == [1, 2, 3, 4]


def test_a_deleted_version_number_is_not_reused(tmp_path: Path) -> None:
    for _ in range(3):
        publish_version(ready_folder(tmp_path, "x"), tmp_path)
    shutil.rmtree(tmp_path / "3")
    assert publish_version(ready_folder(tmp_path, "x"), tmp_path).name == "4"
    shutil.rmtree(tmp_path / "4")
    (tmp_path / MARK_FILE).unlink()  # even without the mark, a folder's number is not taken
    assert publish_version(ready_folder(tmp_path, "x"), tmp_path).name == "3"
    assert json.loads((tmp_path / MARK_FILE).read_text()) == {"next": 4}


def test_folders_from_before_the_mark_count(tmp_path: Path) -> None:
    for n in (1, 2, 7):
        (tmp_path / str(n)).mkdir()
    assert publish_version(ready_folder(tmp_path, "x"), tmp_path).name == "8"


def test_a_broken_mark_is_an_error_not_a_guess(tmp_path: Path) -> None:
    (tmp_path / MARK_FILE).write_text("{}")
    with pytest.raises(ValueError, match="not a version mark"):
        publish_version(ready_folder(tmp_path, "x"), tmp_path)


def test_pruning_keeps_the_reports(tmp_path: Path) -> None:
    for _ in range(3):
        folder = ready_folder(tmp_path, "x")
        (folder / "report").mkdir()
        (folder / "report" / "metrics.json").write_text(json.dumps({"tag": folder.name}))
        publish_version(folder, tmp_path)
    removed = prune_versions(tmp_path, keep=1)
    assert [p.name for p in removed] == ["1", "2"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["3"]
    assert sorted(p.name for p in (tmp_path / REPORTS_DIR).iterdir()) == ["1", "2"]
    assert (tmp_path / REPORTS_DIR / "1" / "metrics.json").is_file()
    assert (tmp_path / "3" / "report" / "metrics.json").is_file()  # kept versions keep theirs
