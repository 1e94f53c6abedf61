"""Loading model versions, scoring batches, thresholds and switching versions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from poster_genres.posters import PosterUnreadable
from poster_genres.schemas.model import apply_thresholds
from poster_genres.worker.classifier import (
    ModelLoadError,
    complete_versions,
    load_latest,
    load_version,
    padded_size,
)
from poster_genres.worker.reload import ModelWatcher
from tests.fixtures import COLOURS, LABELS, build_tiny_model, poll_until, poster_bytes


def test_thresholds_pick_labels_by_descending_score():
    row = np.array([0.2, 0.9, 0.55, 0.7])
    labels = ["a", "b", "c", "d"]
    assert apply_thresholds(row, labels, np.array([0.1, 0.5, 0.5, 0.8])) == ["b", "c", "a"]
    assert apply_thresholds(row, labels, np.full(4, 0.95)) == []


def test_the_loaded_model_scores_a_batch_and_labels_it(model_dir):
    classifier = load_latest(model_dir)
    assert classifier is not None and classifier.labels == LABELS
    images = [poster_bytes(COLOURS[label]) for label in LABELS]
    scores = classifier.scores(images)
    assert scores.shape == (3, 3)
    assert [classifier.genres(row)[0] for row in scores] == [["Red"], ["Green"], ["Blue"]]
    _genres, by_label = classifier.genres(scores[0])
    assert set(by_label) == set(LABELS) and by_label["Red"] > 0.9


def test_batches_are_padded_to_few_sizes():
    sizes = {n: padded_size(n) for n in range(1, 129)}
    assert [sizes[n] for n in (1, 2, 3, 5, 8, 9, 17, 25, 32, 33, 128)] == [
        1, 2, 4, 8, 8, 16, 24, 32, 32, 40, 128
    ]  # fmt: skip
    assert all(n <= size <= n + 7 for n, size in sizes.items())
    assert len({sizes[n] for n in range(1, 33)}) == 7


def test_a_padded_batch_scores_what_each_image_scores_alone(model_dir):
    classifier = load_latest(model_dir)
    assert classifier is not None
    signature, shapes = classifier.signature, []

    def recording(**inputs):
        shapes.append(int(next(iter(inputs.values())).shape[0]))
        return signature(**inputs)

    classifier.signature = recording
    images = [poster_bytes(COLOURS[label]) for label in LABELS] * 3  # 9 images
    scores = classifier.scores(images)
    assert shapes == [16] and scores.shape == (9, 3)
    for image, row in zip(images, scores, strict=True):
        np.testing.assert_allclose(row, classifier.scores([image])[0], atol=1e-6)
    assert shapes[1:] == [1] * 9


def test_a_bad_image_in_a_batch_is_isolated(model_dir):
    classifier = load_latest(model_dir)
    good = poster_bytes(COLOURS["Green"])
    truncated = poster_bytes(COLOURS["Red"], size=(300, 400))[:200]
    results = classifier.classify([good, truncated, good])
    assert isinstance(results[1], PosterUnreadable)
    np.testing.assert_allclose(results[0], classifier.scores([good])[0], atol=1e-6)
    np.testing.assert_allclose(results[2], results[0], atol=1e-6)


def test_highest_complete_version_wins_and_incomplete_ones_are_ignored(tmp_path):
    build_tiny_model(tmp_path)
    build_tiny_model(tmp_path)
    (tmp_path / "3").mkdir()  # being written by hand, no saved_model.pb
    (tmp_path / ".tmp-abc").mkdir()
    assert complete_versions(tmp_path) == [1, 2]
    assert load_latest(tmp_path).version == 2


def _break(version_dir, how: str) -> None:
    if how == "no metadata":
        (version_dir / "metadata.json").unlink()
        (version_dir / "metadata.json").mkdir()
    elif how == "labels mismatch":
        meta = json.loads((version_dir / "metadata.json").read_text())
        meta["labels"] += ["Extra"]
        meta["thresholds"] += [0.5]
        (version_dir / "metadata.json").write_text(json.dumps(meta))
    elif how == "bad metadata":
        (version_dir / "metadata.json").write_text('{"labels": []}')
    elif how == "corrupt graph":
        (version_dir / "saved_model.pb").write_bytes(b"\x00garbage")


@pytest.mark.parametrize("how", ["no metadata", "labels mismatch", "bad metadata", "corrupt graph"])
def test_broken_versions_are_refused_and_the_previous_one_serves(tmp_path, how):
    build_tiny_model(tmp_path)
    broken = build_tiny_model(tmp_path)
    _break(broken, how)
    with pytest.raises(ModelLoadError):
        load_version(broken)
    refused: set[int] = set()
    assert load_latest(tmp_path, refused=refused).version == 1
    # a folder without metadata is not a complete version: skipped rather than refused
    assert refused == (set() if how == "no metadata" else {2})


def test_the_watcher_switches_to_a_new_version_and_refuses_a_broken_one(tmp_path):
    build_tiny_model(tmp_path)
    reloads: list[str] = []
    watcher = ModelWatcher(tmp_path, poll_s=0.05, on_reload=reloads.append)
    try:
        assert watcher.load_initial().version == 1
        build_tiny_model(tmp_path, bias=-2.0)
        assert poll_until(watcher, lambda: watcher.current.version == 2)
        broken = build_tiny_model(tmp_path)
        _break(broken, "labels mismatch")
        assert poll_until(watcher, lambda: 3 in watcher.refused)
        assert watcher.current.version == 2
        assert reloads == ["loaded", "refused"]
        shutil.rmtree(broken)
    finally:
        watcher.close()
