"""The model-folder contract (schemas/model.py): versions, the serving pointer, genres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poster_genres.schemas.model import (
    CANDIDATES_DIR,
    METADATA_FILE,
    SERVING_FILE,
    PointerError,
    ServingPointer,
    complete_versions,
    genres_from_scores,
    latest_version,
    served_version,
    version_numbers,
)


def test_versions_complete_and_not(tmp_path: Path) -> None:
    assert version_numbers(tmp_path / "missing") == [] and latest_version(tmp_path) is None
    for name, files in {
        "1": ("saved_model.pb", METADATA_FILE),
        "2": ("saved_model.pb",),
        "10": ("saved_model.pb", METADATA_FILE),
        "11": (),
    }.items():
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_text("x")
    (tmp_path / ".tmp-abc").mkdir()
    (tmp_path / "3").write_text("a file, not a version")
    assert version_numbers(tmp_path) == [1, 2, 10, 11]  # numbers in use, complete or not
    assert complete_versions(tmp_path) == [1, 10]
    assert latest_version(tmp_path) == 10


def test_genres_by_descending_score_ties_by_label_scores_in_label_order() -> None:
    labels = ["Drama", "Comedy", "Action", "Horror"]
    row = np.array([0.7, 0.9, 0.7, 0.123456789], np.float32)
    genres, scores = genres_from_scores(row, labels, [0.5, 0.5, 0.5, 0.2])
    assert genres == ["Comedy", "Action", "Drama"]
    assert list(scores) == labels and scores["Horror"] == 0.123457
    # float32 scores meet float32 thresholds: 0.6 reaches a threshold of 0.6 given as float64
    assert genres_from_scores(np.array([0.6], np.float32), ["A"], [0.6])[0] == ["A"]


def complete(model_dir: Path, *versions: int) -> None:
    """Make complete (if empty) version folders."""
    for v in versions:
        (model_dir / str(v)).mkdir(parents=True)
        for file in ("saved_model.pb", METADATA_FILE):
            (model_dir / str(v) / file).write_text("x")


def test_served_version_pin_then_pointer_then_the_highest(tmp_path: Path) -> None:
    assert served_version(tmp_path) is None
    complete(tmp_path, 1, 2, 3)
    complete(tmp_path / CANDIDATES_DIR, 4)  # a candidate is never served by default
    assert served_version(tmp_path) == 3
    assert served_version(tmp_path, skip={3}) == 2  # a worker passes over what it refused
    (tmp_path / SERVING_FILE).write_text(
        '{"version": 2, "previous": [3], "updated_at": "2026-01-02T03:04:05Z"}'
    )
    assert served_version(tmp_path) == 2  # even below the highest: a rollback
    assert served_version(tmp_path, pinned=1) == 1
    (tmp_path / SERVING_FILE).write_text(
        '{"version": 9, "previous": [], "updated_at": "2026-01-02T03:04:05Z"}'
    )
    assert served_version(tmp_path) == 9  # named, present or not: the reader decides
    pointer = ServingPointer.read(tmp_path)
    assert pointer is not None and pointer.previous == [] and pointer.updated_at.year == 2026
    (tmp_path / SERVING_FILE).write_text('{"version": "latest"}')
    with pytest.raises(PointerError, match="not a serving pointer"):
        served_version(tmp_path)
    assert served_version(tmp_path, pinned=2) == 2  # a pin does not read the pointer
