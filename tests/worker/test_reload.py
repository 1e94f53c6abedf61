"""The model watcher remembers refusals by folder, not by number, and retries after a back-off."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import poster_genres.worker.classifier
import poster_genres.worker.reload
from poster_genres.worker.classifier import ModelLoadError
from poster_genres.worker.reload import ModelWatcher
from tests.fixtures import build_tiny_model, poll_until


@pytest.fixture(scope="module")
def good_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("source"))


def publish(source: Path, model_dir: Path, version: int) -> Path:
    """Copy a version folder in the way the trainer does: under a temporary name, then rename."""
    staging = model_dir / f".{version}.tmp"
    shutil.copytree(source, staging)
    target = model_dir / str(version)
    staging.rename(target)
    return target


def test_a_refused_version_replaced_by_a_good_folder_of_the_same_number_is_loaded(
    tmp_path: Path, good_version: Path
) -> None:
    publish(good_version, tmp_path, 1)
    reloads: list[str] = []
    watcher = ModelWatcher(tmp_path, poll_s=0.05, on_reload=reloads.append)  # 5 min back-off
    try:
        assert watcher.load_initial().version == 1  # type: ignore[union-attr]
        broken = publish(good_version, tmp_path, 5)
        (broken / "saved_model.pb").write_bytes(b"\x00not a graph")
        assert poll_until(watcher, lambda: watcher.refused == {5})
        shutil.rmtree(broken)
        publish(good_version, tmp_path, 5)
        assert poll_until(watcher, lambda: watcher.current.version == 5)  # type: ignore[union-attr]
        assert reloads == ["refused", "loaded"]
        assert watcher.refused == set()
    finally:
        watcher.close()


def test_a_refused_folder_is_not_tried_again_before_its_back_off(
    tmp_path: Path, good_version: Path
) -> None:
    publish(good_version, tmp_path, 1)
    reloads: list[str] = []
    watcher = ModelWatcher(tmp_path, poll_s=0.05, on_reload=reloads.append)
    try:
        watcher.load_initial()
        broken = publish(good_version, tmp_path, 2)
        (broken / "saved_model.pb").write_bytes(b"junk")
        assert poll_until(watcher, lambda: watcher.refused == {2})
        poll_until(watcher, lambda: False, timeout_s=1.0)
        assert reloads == ["refused"]  # polled 20 times more, loaded once
    finally:
        watcher.close()


def test_a_warm_up_that_failed_for_a_passing_reason_is_tried_again_after_the_back_off(
    tmp_path: Path, good_version: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(good_version, tmp_path, 1)
    real = poster_genres.worker.classifier.load_version
    failures = [ModelLoadError(f"{tmp_path}/2 failed its warm-up: OOM when allocating tensor")]

    def flaky(path: Path, device: str = "CPU:0"):
        if path.name == "2" and failures:
            raise failures.pop()
        return real(path, device)

    monkeypatch.setattr(poster_genres.worker.classifier, "load_version", flaky)
    monkeypatch.setattr(poster_genres.worker.reload, "load_version", flaky, raising=False)
    reloads: list[str] = []
    watcher = ModelWatcher(tmp_path, poll_s=0.05, on_reload=reloads.append, refusal_backoff_s=0.5)
    try:
        watcher.load_initial()
        publish(good_version, tmp_path, 2)
        assert poll_until(watcher, lambda: watcher.current.version == 2)  # type: ignore[union-attr]
        assert reloads == ["refused", "loaded"]
    finally:
        watcher.close()


def point(model_dir: Path, version: int) -> None:
    """Move the serving pointer as `genre-trainer promote` does."""
    from poster_genres.trainer.release import promote

    promote(model_dir, version)


def test_the_watcher_follows_the_pointer_down_and_up(tmp_path: Path, good_version: Path) -> None:
    for v in (1, 2, 3):
        publish(good_version, tmp_path, v)
    point(tmp_path, 2)
    watcher = ModelWatcher(tmp_path, poll_s=0.05)
    try:
        assert watcher.load_initial().version == 2  # type: ignore[union-attr]  # not the highest
        point(tmp_path, 1)  # a rollback: lower than the current one
        assert poll_until(watcher, lambda: watcher.current.version == 1)  # type: ignore[union-attr]
        point(tmp_path, 3)
        assert poll_until(watcher, lambda: watcher.current.version == 3)  # type: ignore[union-attr]
        assert watcher.wanted == 3
    finally:
        watcher.close()


def test_a_pin_wins_over_the_pointer(tmp_path: Path, good_version: Path) -> None:
    for v in (1, 2):
        publish(good_version, tmp_path, v)
    point(tmp_path, 2)
    watcher = ModelWatcher(tmp_path, poll_s=0.05, pinned=1)
    try:
        assert watcher.load_initial().version == 1  # type: ignore[union-attr]
        point(tmp_path, 2)
        publish(good_version, tmp_path, 3)
        poll_until(watcher, lambda: False, timeout_s=0.5)
        assert watcher.current.version == 1 and watcher.wanted == 1  # type: ignore[union-attr]
    finally:
        watcher.close()


def test_a_pointer_to_a_missing_or_broken_version_keeps_the_current_one_and_says_so_once(
    tmp_path: Path, good_version: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from poster_genres.schemas.model import SERVING_FILE

    publish(good_version, tmp_path, 1)
    problems: list[str] = []
    watcher = ModelWatcher(tmp_path, poll_s=0.05, on_problem=problems.append)
    try:
        watcher.load_initial()
        (tmp_path / SERVING_FILE).write_text(
            '{"version": 7, "previous": [1], "updated_at": "2026-01-01T00:00:00Z"}'
        )
        poll_until(watcher, lambda: False, timeout_s=1.0)  # 20 polls
        assert watcher.current.version == 1 and watcher.wanted == 7  # type: ignore[union-attr]
        lines = [r for r in caplog.records if "names model version 7" in r.getMessage()]
        assert len(lines) == 1 and "missing" in lines[0].getMessage()
        assert problems == ["missing 7"]
        (tmp_path / SERVING_FILE).write_text("{not json")
        poll_until(watcher, lambda: False, timeout_s=0.5)
        assert problems == ["missing 7", "unreadable pointer"]
        broken = publish(good_version, tmp_path, 7)
        (broken / "saved_model.pb").write_bytes(b"junk")
        point(tmp_path, 7)
        assert poll_until(watcher, lambda: 7 in watcher.refused)
        poll_until(watcher, lambda: False, timeout_s=0.5)
        assert problems == ["missing 7", "unreadable pointer", "refused 7"]
        assert watcher.current.version == 1  # type: ignore[union-attr]
        shutil.rmtree(broken)
        publish(good_version, tmp_path, 7)  # it appears, whole: served without a restart
        assert poll_until(watcher, lambda: watcher.current.version == 7)  # type: ignore[union-attr]
    finally:
        watcher.close()


def test_a_worker_starting_on_a_pointer_to_a_missing_version_serves_the_highest(
    tmp_path: Path, good_version: Path
) -> None:
    for v in (1, 2):
        publish(good_version, tmp_path, v)
    point(tmp_path, 1)
    shutil.rmtree(tmp_path / "1")
    watcher = ModelWatcher(tmp_path, poll_s=0.05)
    try:
        assert watcher.load_initial().version == 2  # type: ignore[union-attr]
        assert watcher.wanted == 1
    finally:
        watcher.close()
