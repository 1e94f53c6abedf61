"""Threshold objectives: macro per genre, one micro threshold, and the capped balanced mix."""

from __future__ import annotations

import numpy as np
import pytest

from poster_genres.trainer.evaluation import evaluate
from poster_genres.trainer.thresholds import (
    MACRO_WEIGHT,
    MAX_PREDICTED_RATIO,
    balanced_thresholds,
    choose_thresholds,
    macro_thresholds,
    micro_threshold,
)


def _rare_and_common(seed: int = 0, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """A common genre the scores separate well and rare ones they barely separate.

    The rare genres' own F1 peaks at a very low threshold (predict it for nearly everyone),
    which is what costs micro F1 under the macro objective.
    """
    rng = np.random.default_rng(seed)
    y = np.zeros((n, 4), int)
    y[:, 0] = rng.random(n) < 0.5
    for j in (1, 2, 3):
        y[:, j] = rng.random(n) < 0.04
    scores = np.empty((n, 4))
    scores[:, 0] = np.clip(0.5 + 0.35 * (2 * y[:, 0] - 1) + rng.normal(0, 0.2, n), 0, 1)
    for j in (1, 2, 3):
        scores[:, j] = np.clip(0.08 + 0.03 * y[:, j] + rng.normal(0, 0.05, n), 0, 1)
    return y, scores


def _f1s(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    report = evaluate(y, scores, thresholds, ["a", "b", "c", "d"])
    return report["macro_f1"], report["micro_f1"]


def _genre_f1(y: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    decided = scores > threshold
    tp = int((decided & (y > 0)).sum())
    return 2 * tp / max(int(decided.sum()) + int((y > 0).sum()), 1)


def test_macro_thresholds_maximise_each_genres_f1() -> None:
    y, scores = _rare_and_common()
    thresholds = macro_thresholds(y, scores)
    for j in range(y.shape[1]):
        best = max(_genre_f1(y[:, j], scores[:, j], t) for t in np.arange(0.02, 0.99, 0.01))
        assert _genre_f1(y[:, j], scores[:, j], thresholds[j]) == pytest.approx(best, abs=1e-9)


def test_micro_objective_is_one_threshold_with_the_best_micro_f1() -> None:
    y, scores = _rare_and_common()
    thresholds = choose_thresholds(y, scores, "micro")
    assert len(set(thresholds)) == 1
    assert thresholds[0] == micro_threshold(y, scores)
    micro = _f1s(y, scores, thresholds + 1e-9)[1]
    for t in (0.1, 0.3, 0.5, 0.7):
        assert micro >= _f1s(y, scores, np.full(4, t))[1] - 1e-9


def test_balanced_keeps_most_of_macro_and_most_of_micro() -> None:
    y, scores = _rare_and_common()
    macro = _f1s(y, scores, macro_thresholds(y, scores) + 1e-9)
    micro = _f1s(y, scores, np.full(4, micro_threshold(y, scores)) + 1e-9)
    balanced = _f1s(y, scores, balanced_thresholds(y, scores) + 1e-9)
    assert macro[1] < micro[1] - 0.05  # the macro objective pays in micro F1 here
    assert balanced[1] > macro[1] + 0.05
    assert balanced[0] > micro[0]
    assert 0.75 * balanced[0] + 0.25 * balanced[1] >= 0.75 * micro[0] + 0.25 * micro[1]


def test_balanced_with_full_macro_weight_and_no_cap_matches_macro_objective_value() -> None:
    y, scores = _rare_and_common(seed=1)
    macro_value = _f1s(y, scores, macro_thresholds(y, scores) + 1e-9)[0]
    balanced = balanced_thresholds(y, scores, macro_weight=1.0, max_predicted_ratio=0)
    assert _f1s(y, scores, balanced + 1e-9)[0] == pytest.approx(macro_value, abs=0.01)


def _predicted_ratio(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return (scores > thresholds).sum(axis=0) / (y > 0).sum(axis=0)


def test_balanced_predicts_no_genre_beyond_the_cap() -> None:
    """Uncapped, a rare genre's best point predicts it for twice as many films as hold it."""
    y, scores = _rare_and_common(seed=0)
    uncapped = balanced_thresholds(y, scores, 0.85, max_predicted_ratio=0)
    assert _predicted_ratio(y, scores, uncapped).max() > 2
    capped = balanced_thresholds(y, scores, 0.85, max_predicted_ratio=1.5)
    assert _predicted_ratio(y, scores, capped).max() <= 1.5
    assert (capped >= uncapped).all()  # the cap only ever raises a threshold here
    assert _f1s(y, scores, capped + 1e-9)[1] > _f1s(y, scores, uncapped + 1e-9)[1]


def test_cap_leaves_genres_within_it_alone() -> None:
    y, scores = _rare_and_common(seed=1)
    uncapped = balanced_thresholds(y, scores, 0.85, max_predicted_ratio=0)
    capped = balanced_thresholds(y, scores, 0.85, max_predicted_ratio=5)
    assert _predicted_ratio(y, scores, uncapped).max() < 5
    np.testing.assert_array_equal(capped, uncapped)


def test_a_genre_over_the_cap_everywhere_gets_the_highest_threshold() -> None:
    y, scores = _rare_and_common(seed=2)
    scores[:, 3] = 0.99  # every film scores above every grid value
    thresholds = balanced_thresholds(y, scores, max_predicted_ratio=1.5)
    assert thresholds[3] == 0.98


def test_the_cap_reaches_choose_thresholds() -> None:
    y, scores = _rare_and_common(seed=0)
    default = choose_thresholds(y, scores, "balanced")
    assert _predicted_ratio(y, scores, default).max() <= MAX_PREDICTED_RATIO
    uncapped = choose_thresholds(y, scores, "balanced", max_predicted_ratio=0)
    np.testing.assert_array_equal(
        uncapped, balanced_thresholds(y, scores, MACRO_WEIGHT, max_predicted_ratio=0)
    )
    assert not np.array_equal(default, uncapped)


def test_unknown_objective_is_refused() -> None:
    y, scores = _rare_and_common()
    with pytest.raises(ValueError, match="objective"):
        choose_thresholds(y, scores, "median")  # type: ignore[arg-type]
