"""The yardstick: disjoint hash folds, every fold scored by a model that never saw it."""

from __future__ import annotations

import numpy as np
import pytest

from poster_genres.trainer.settings import HeadSettings, TrainSettings
from poster_genres.trainer.split import bucket
from poster_genres.trainer.yardstick import cross_validate, hash_folds, head_recipe, inner_split

LABELS = ["a", "b", "c"]


def _data(n: int = 200, dim: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random((n, len(LABELS))) < 0.4).astype(np.float32)
    x = (y @ rng.normal(size=(len(LABELS), dim)) + rng.normal(0, 0.3, (n, dim))).astype(np.float32)
    return x, y, np.arange(1000, 1000 + n)


def test_hash_folds_partition_the_films_by_their_hash_point() -> None:
    ids = np.arange(1, 501)
    folds = hash_folds(ids, 4)
    assert sorted(np.concatenate(folds).tolist()) == list(range(500))
    for j, rows in enumerate(folds):
        assert all(j / 4 <= bucket(int(ids[r])) < (j + 1) / 4 for r in rows)
    assert [f.tolist() for f in hash_folds(ids[::-1], 4)] != [f.tolist() for f in folds]
    with pytest.raises(ValueError):
        hash_folds(ids, 1)


def test_each_fold_is_scored_by_a_fit_that_never_saw_it() -> None:
    _, y, ids = _data()
    seen: list[tuple[set[int], set[int]]] = []

    def fit_and_score(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append((set(train.tolist()), set(test.tolist())))
        return y[test], np.full(len(LABELS), 0.5)  # a perfect oracle: F1 1 on every fold

    summary = cross_validate(fit_and_score, y, ids, LABELS, k=3)
    assert len(seen) == 3 and all(not (train & test) for train, test in seen)
    assert set().union(*(test for _, test in seen)) == set(range(len(y)))
    assert summary["macro_f1"] == 1.0 and summary["macro_f1_sd"] == 0.0
    assert summary["films"] == len(y) and len(summary["per_fold"]) == 3
    assert [g["support"] for g in summary["pooled_per_genre"]] == y.sum(axis=0).tolist()


def test_the_spread_is_the_standard_deviation_across_folds() -> None:
    _, y, ids = _data()
    calls = iter([0.0, 1.0])

    def half_right(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (y[test] if next(calls) else 1 - y[test]), np.full(len(LABELS), 0.5)

    summary = cross_validate(half_right, y, ids, LABELS, k=2)
    assert summary["macro_f1_min"] == 0.0 and summary["macro_f1_max"] == 1.0
    assert summary["macro_f1_sd"] == pytest.approx(np.std([0.0, 1.0], ddof=1), abs=1e-4)


@pytest.mark.slow
def test_the_head_recipe_learns_on_the_training_folds_only() -> None:
    x, y, ids = _data()
    settings = TrainSettings(
        offline=True, folds=2, repeats=1, head=HeadSettings(epochs=10, patience=0, hidden=16)
    )
    summary = cross_validate(head_recipe(x, y, ids, settings, 2), y, ids, LABELS, k=2)
    every_label = 2 * y.mean() / (1 + y.mean())  # micro F1 of predicting every label
    assert summary["micro_f1"] > every_label + 0.1  # the labels are linear in x
    assert 0 <= summary["micro_f1_sd"] < 0.2


def test_every_fold_keeps_validation_films_inside_its_training_folds() -> None:
    ids = np.arange(1, 2001)
    folds = hash_folds(ids, 5)
    for j, test in enumerate(folds):
        train = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != j]))
        fit_rows, validation = inner_split(train, ids, 5, 0.15)
        assert sorted([*fit_rows, *validation]) == train.tolist()
        assert 0.1 < len(validation) / len(train) < 0.2
        assert not set(validation) & set(test.tolist())
