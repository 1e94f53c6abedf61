"""The model-folder contract in schemas/model.py: version listing and scores to genres."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from schemas.model import (
    METADATA_FILE,
    complete_versions,
    genres_from_scores,
    latest_version,
    version_numbers,
)


def test_versions_complete_and_not(tmp_path: Path) -> None:
    assert version_numbers(tmp_path / "missing") == [] and latest_version(tmp_path) is None
    for name, files in {"1": ("saved_model.pb", METADATA_FILE), "2": ("saved_model.pb",),
                        "10": ("saved_model.pb", METADATA_FILE), "11": ()}.items():
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
