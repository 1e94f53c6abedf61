"""The serving pointer: promote, rollback, the lock, pruning around it, and the gate's rule."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from poster_genres.schemas.model import (
    CANDIDATES_DIR,
    METADATA_FILE,
    SERVING_FILE,
    ServingPointer,
    served_version,
)
from poster_genres.trainer.cli import HELD_BACK, parse_args, run
from poster_genres.trainer.errors import ReleaseError
from poster_genres.trainer.export import REPORTS_DIR, prune_versions
from poster_genres.trainer.gate import judge
from poster_genres.trainer.release import promote, rollback
from poster_genres.trainer.settings import PromoteSettings, RollbackSettings, TrainSettings
from poster_genres.trainer.versions import locked, next_version, publish_version


def make_version(parent: Path, version: int) -> Path:
    """A complete (if empty) version folder with a report."""
    folder = parent / str(version)
    (folder / "report").mkdir(parents=True)
    for name in ("saved_model.pb", METADATA_FILE, "report/metrics.json"):
        (folder / name).write_text(str(version))
    return folder


def pointer(model_dir: Path) -> tuple[int, list[int]]:
    """The pointer's version and history, read as a worker reads it."""
    read = ServingPointer.read(model_dir)
    assert read is not None
    return read.version, read.previous


def test_promote_and_rollback_move_the_pointer(tmp_path: Path) -> None:
    for v in (1, 2):
        make_version(tmp_path, v)
    make_version(tmp_path / CANDIDATES_DIR, 3)
    assert served_version(tmp_path) == 2 and not (tmp_path / SERVING_FILE).exists()
    assert promote(tmp_path, 3).was == 2  # a candidate is moved in, then served
    assert (tmp_path / "3" / "saved_model.pb").is_file()
    assert not (tmp_path / CANDIDATES_DIR / "3").exists()
    assert pointer(tmp_path) == (3, [2])
    promote(tmp_path, 1)  # a lower version may be served: a pin by hand
    assert pointer(tmp_path) == (1, [3, 2]) and served_version(tmp_path) == 1
    moved = rollback(tmp_path)
    assert (moved.was, pointer(tmp_path)) == (1, (3, [2]))
    assert rollback(tmp_path).pointer.version == 2
    assert pointer(tmp_path) == (2, [])
    with pytest.raises(ReleaseError, match="no version served before 2"):
        rollback(tmp_path)
    with pytest.raises(ReleaseError, match="no complete version 9"):
        promote(tmp_path, 9)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files


def test_rollback_without_a_pointer_goes_to_the_next_highest(tmp_path: Path) -> None:
    for v in (1, 2, 4):
        make_version(tmp_path, v)
    assert rollback(tmp_path).was == 4
    assert pointer(tmp_path) == (2, [1])


def test_rollback_skips_versions_pruned_since(tmp_path: Path) -> None:
    for v in (1, 2, 3):
        make_version(tmp_path, v)
    for v in (1, 2, 3):
        promote(tmp_path, v)
    assert pointer(tmp_path) == (3, [2, 1])
    prune_versions(tmp_path, keep=1)  # 2 and 1 go (their reports stay)
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_text("")  # incomplete: not a place to go
    with pytest.raises(ReleaseError):
        rollback(tmp_path)
    make_version(tmp_path / "restored", 2).rename(tmp_path / "2")
    assert rollback(tmp_path).pointer.version == 2


def test_readers_never_see_half_a_pointer(tmp_path: Path) -> None:
    """Every read during 300 moves parses: the pointer is replaced, never rewritten in place."""
    for v in (1, 2):
        make_version(tmp_path, v)
    promote(tmp_path, 1)
    seen: list[int] = []
    errors: list[Exception] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.append(pointer(tmp_path)[0])
            except Exception as exc:  # noqa: BLE001 (any failure to read is the finding)
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(300):
            promote(tmp_path, 1 + i % 2)
    finally:
        done.set()
        reader.join()
    assert not errors, errors[:3]
    assert set(seen) == {1, 2}


def test_moves_wait_for_the_model_folders_lock(tmp_path: Path) -> None:
    make_version(tmp_path, 1)
    finished = threading.Event()
    with locked(tmp_path):  # as an exporter holds it
        worker = threading.Thread(target=lambda: (promote(tmp_path, 1), finished.set()))
        worker.start()
        time.sleep(0.5)
        assert not finished.is_set() and not (tmp_path / SERVING_FILE).exists()
    worker.join(10)
    assert finished.is_set() and pointer(tmp_path)[0] == 1


def test_pruning_keeps_the_served_version_and_prunes_candidates(tmp_path: Path) -> None:
    for v in (1, 2, 3, 4):
        make_version(tmp_path, v)
    promote(tmp_path, 1)  # rolled back to an old version
    prune_versions(tmp_path, keep=2)
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [1, 3, 4]
    for v in (5, 6, 7):
        make_version(tmp_path / CANDIDATES_DIR, v)
    prune_versions(tmp_path, keep=1, candidates=True)
    assert [p.name for p in (tmp_path / CANDIDATES_DIR).iterdir()] == ["7"]
    assert sorted(p.name for p in (tmp_path / REPORTS_DIR).iterdir()) == ["2", "5", "6"]


def test_candidates_take_numbers_that_are_never_reused(tmp_path: Path) -> None:
    make_version(tmp_path, 1)
    ready = tmp_path / ".tmp-x"
    ready.mkdir()
    assert publish_version(ready, tmp_path, candidate=True) == tmp_path / CANDIDATES_DIR / "2"
    (tmp_path / "versions.json").unlink()  # even without the mark, a candidate's number is taken
    assert next_version(tmp_path) == 3


def test_promote_and_rollback_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for v in (1, 2):
        make_version(tmp_path, v)
    _, settings = parse_args(["promote", "1"], {"MODEL_DIR": str(tmp_path)})
    assert isinstance(settings, PromoteSettings) and settings.model_dir == tmp_path
    assert run("promote", settings) == 0
    assert capsys.readouterr().out.strip() == "serving version 1 (was version 2)"
    assert run("promote", PromoteSettings(model_dir=tmp_path, version=5)) == 2
    assert run("rollback", RollbackSettings(model_dir=tmp_path)) == 0
    assert served_version(tmp_path) == 2
    assert run("rollback", RollbackSettings(model_dir=tmp_path)) == 2  # nothing before 2
    (tmp_path / SERVING_FILE).write_text("{")
    assert run("rollback", RollbackSettings(model_dir=tmp_path)) == 2
    assert run("promote", PromoteSettings(model_dir=tmp_path, version=1)) == 0  # repairs it
    assert json.loads((tmp_path / SERVING_FILE).read_text())["version"] == 1


def test_the_gate_rule() -> None:
    served = {"macro_f1": 0.70, "micro_f1": 0.80}
    baseline = {"macro_f1": 0.40, "micro_f1": 0.45}
    metrics = ["macro_f1", "micro_f1"]
    ok = judge({"macro_f1": 0.696, "micro_f1": 0.90}, served, baseline, metrics, 0.005, 4)
    assert ok.passed and ok.against == 4
    worse = judge({"macro_f1": 0.694, "micro_f1": 0.90}, served, baseline, metrics, 0.005, 4)
    assert not worse.passed
    assert worse.reason == (
        "worse than served version 4 (tolerance 0.005): macro_f1 0.6940 vs 0.7000"
    )
    assert judge({"macro_f1": 0.694, "micro_f1": 0.5}, served, baseline, ["micro_f1"], 0.5).passed
    # nothing served: beat predicting every genre on every gate metric
    first = judge({"macro_f1": 0.41, "micro_f1": 0.45}, None, baseline, metrics, 0.005)
    assert not first.passed and "all-genres baseline" in first.reason and first.against is None
    assert judge({"macro_f1": 0.41, "micro_f1": 0.46}, None, baseline, metrics, 0.005).passed


def test_gate_and_label_options() -> None:
    _, settings = parse_args(
        [
            "train",
            "--gate-metrics",
            "macro_f1,samples_f1",
            "--gate-tolerance",
            "0.01",
            "--no-promote",
            "--exclude-genres",
            "IMAX,Film-Noir",
        ],
        {},
    )
    assert isinstance(settings, TrainSettings)
    assert settings.gate_metrics == ["macro_f1", "samples_f1"] and settings.gate_tolerance == 0.01
    assert not settings.promote and not settings.force
    assert settings.exclude_genres == ["IMAX", "Film-Noir"]
    _, default = parse_args(["train"], {})
    assert default.gate_metrics == ["macro_f1", "micro_f1"] and default.gate_tolerance == 0.005
    assert default.exclude_genres == ["IMAX", "(no genres listed)"] and default.promote
    assert parse_args(["train", "--exclude-genres", ""], {})[1].exclude_genres == []
    with pytest.raises(SystemExit):
        parse_args(["train", "--gate-metrics", "accuracy"], {})
    with pytest.raises(SystemExit, match="release gate needs evaluation films"):
        parse_args(["train", "--test-fraction", "0"], {})
    assert parse_args(["train", "--test-fraction", "0", "--force"], {})[1].force
    assert HELD_BACK == 3


def test_evaluate_defaults_to_the_served_and_the_newest_version(tmp_path: Path) -> None:
    from poster_genres.trainer.compare import default_versions

    for v in (1, 2):
        make_version(tmp_path, v)
    assert default_versions(tmp_path) == [2]  # served and newest are one
    make_version(tmp_path / CANDIDATES_DIR, 3)
    promote(tmp_path, 1)
    assert default_versions(tmp_path) == [1, 3]
    (tmp_path / SERVING_FILE).write_text(
        '{"version": 9, "previous": [], "updated_at": "2026-01-01T00:00:00Z"}'
    )
    assert default_versions(tmp_path) == [3]  # the pointer names a version that is not there
