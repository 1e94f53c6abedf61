"""Model trust: only complete, consistent version folders in MODEL_DIR are served; bad ones are refused."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from poster_genres.worker.classifier import (
    ModelLoadError,
    complete_versions,
    load_latest,
    load_version,
)
from poster_genres.worker.reload import ModelWatcher
from tests.fixtures import build_tiny_model


@pytest.fixture(scope="module")
def good_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("source"))


def copy_version(source: Path, model_dir: Path, version: int) -> Path:
    target = model_dir / str(version)
    shutil.copytree(source, target)
    return target


def test_a_version_without_metadata_is_neither_complete_nor_loadable(
    tmp_path: Path, good_version: Path
) -> None:
    path = copy_version(good_version, tmp_path, 2)
    (path / "metadata.json").unlink()
    assert complete_versions(tmp_path) == []
    with pytest.raises(ModelLoadError, match="has no metadata.json"):
        load_version(path)


def test_labels_that_do_not_match_the_outputs_are_refused(
    tmp_path: Path, good_version: Path
) -> None:
    path = copy_version(good_version, tmp_path, 2)
    meta = json.loads((path / "metadata.json").read_text())
    meta["labels"] = meta["labels"] + ["Purple"]
    meta["thresholds"] = meta["thresholds"] + [0.5]
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(
        ModelLoadError, match="outputs 3 scores per image but its metadata names 4 labels"
    ):
        load_version(path)


def test_invalid_metadata_and_a_broken_saved_model_are_refused(
    tmp_path: Path, good_version: Path
) -> None:
    bad_meta = copy_version(good_version, tmp_path, 2)
    (bad_meta / "metadata.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="metadata.json is invalid"):
        load_version(bad_meta)
    broken = copy_version(good_version, tmp_path, 3)
    (broken / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match="does not load as a SavedModel"):
        load_version(broken)


def test_a_model_that_fails_its_warm_up_is_refused(tmp_path: Path) -> None:
    path = build_tiny_model(tmp_path, bias=float("nan"))
    with pytest.raises(ModelLoadError, match="outside \\[0, 1\\] on its warm-up"):
        load_version(path)


def test_only_integer_version_folders_in_model_dir_count(
    tmp_path: Path, good_version: Path
) -> None:
    for name in ("latest", "2.tmp", "-3", "0x4"):
        copy_version(good_version, tmp_path, name)  # type: ignore[arg-type]
    assert complete_versions(tmp_path) == []
    assert load_latest(tmp_path) is None
    with pytest.raises(ModelLoadError, match="not an integer version folder"):
        load_version(tmp_path / "latest")


def test_bad_newer_versions_are_refused_and_the_current_one_keeps_serving(
    tmp_path: Path, good_version: Path
) -> None:
    copy_version(good_version, tmp_path, 1)
    watcher = ModelWatcher(tmp_path, poll_s=0.1)
    try:
        assert watcher.load_initial().version == 1  # type: ignore[union-attr]
        mismatched = copy_version(good_version, tmp_path, 2)
        meta = json.loads((mismatched / "metadata.json").read_text())
        meta["labels"], meta["thresholds"] = meta["labels"][:2], meta["thresholds"][:2]
        (mismatched / "metadata.json").write_text(json.dumps(meta))
        broken = copy_version(good_version, tmp_path, 3)
        (broken / "saved_model.pb").write_bytes(b"junk")
        deadline = time.monotonic() + 30
        while watcher.refused != {2, 3} and time.monotonic() < deadline:
            watcher.poll()
            time.sleep(0.1)
        assert watcher.refused == {2, 3}
        assert watcher.current is not None and watcher.current.version == 1
        assert watcher.current.scores([b""] * 0).shape == (0, 3)
        copy_version(good_version, tmp_path, 4)
        deadline = time.monotonic() + 30
        while watcher.current.version != 4 and time.monotonic() < deadline:
            watcher.poll()
            time.sleep(0.1)
        assert watcher.current.version == 4
    finally:
        watcher.close()
