"""Per-genre decision thresholds, chosen on held-out (out-of-fold) scores for an objective.

Three objectives, all on the grid 0.02..0.98 in steps of 0.01, taking the middle of ties:

- `macro`: each genre's threshold maximises that genre's F1. Rare genres then drift to
  very low thresholds ("predict it for nearly everyone"), which buys macro F1 with many
  false positives and costs micro F1: what most of a recommender's films see.
- `micro`: one threshold for every genre, the one that maximises micro F1.
- `balanced` (the default): per-genre thresholds that maximise
  `w * macro F1 + (1 - w) * micro F1`, found by coordinate ascent from the micro
  threshold, with a cap: no genre's threshold may predict it for more than
  `max_predicted_ratio` times as many out-of-fold films as actually have it. On real
  posters it keeps nearly all of the macro gain at the micro F1 of a single threshold
  (docs/trainer.md has the figures).

Why the cap: a rare genre's F1 curve on out-of-fold scores is flat and noisy, so its best
point often sits at a low threshold that predicts the genre for two or three times as
many films as hold it. Such a threshold carries over poorly to new films and each extra
prediction costs micro F1; the cap keeps every genre's predicted count near its real one.

Tuning decides `score > t`; serving and evaluation decide `score >= t`, as before.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Objective = Literal["macro", "micro", "balanced"]
OBJECTIVES: tuple[Objective, ...] = ("macro", "micro", "balanced")
GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)
MACRO_WEIGHT = 0.85
MAX_PREDICTED_RATIO = 1.5
MAX_SWEEPS = 4


def _counts(y: np.ndarray, scores: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, ...]:
    """tp, fp, fn per label (rows) and grid threshold (columns): int arrays [n_labels, grid]."""
    y = y > 0
    tp = np.empty((y.shape[1], len(grid)), np.int64)
    fp = np.empty_like(tp)
    for j in range(y.shape[1]):
        decisions = scores[:, j][None, :] > grid[:, None]  # [grid, n]
        tp[j] = (decisions & y[:, j]).sum(axis=1)
        fp[j] = (decisions & ~y[:, j]).sum(axis=1)
    fn = y.sum(axis=0)[:, None] - tp
    return tp, fp, fn


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def _middle_best(values: np.ndarray) -> int:
    """Index of the middle one of the best values (ties are common on a grid)."""
    best = np.flatnonzero(values >= values.max() - 1e-12)
    return int(best[len(best) // 2])


def macro_thresholds(
    y: np.ndarray, scores: np.ndarray, default: float = 0.5, grid: np.ndarray = GRID
) -> np.ndarray:
    """Per genre, the threshold that maximises its F1; a genre without positives keeps `default`."""
    f1 = _f1(*_counts(y, scores, grid))
    has_positives = (y > 0).any(axis=0)
    return np.array(
        [grid[_middle_best(f1[j])] if has_positives[j] else default for j in range(y.shape[1])],
        dtype=np.float64,
    )


def micro_threshold(y: np.ndarray, scores: np.ndarray, grid: np.ndarray = GRID) -> float:
    """The one threshold for every genre that maximises micro F1."""
    tp, fp, fn = (a.sum(axis=0) for a in _counts(y, scores, grid))
    return float(grid[_middle_best(_f1(tp, fp, fn))])


def _within_cap(tp: np.ndarray, fp: np.ndarray, y: np.ndarray, ratio: float) -> np.ndarray:
    """Grid thresholds [n_labels, grid] predicting at most `ratio` x a genre's positives.

    The highest grid value is always allowed; 0 (or less) allows every threshold.
    """
    if ratio <= 0:
        return np.ones(tp.shape, bool)
    allowed = tp + fp <= ratio * (y > 0).sum(axis=0)[:, None]
    allowed[:, -1] = True
    return allowed


def balanced_thresholds(
    y: np.ndarray,
    scores: np.ndarray,
    macro_weight: float = MACRO_WEIGHT,
    grid: np.ndarray = GRID,
    max_predicted_ratio: float = MAX_PREDICTED_RATIO,
) -> np.ndarray:
    """Per-genre thresholds maximising `w * macro F1 + (1 - w) * micro F1` by coordinate ascent.

    Only thresholds that predict a genre for at most `max_predicted_ratio` x as many films
    as have it are candidates (0 = no cap). Every genre starts at the micro threshold, or
    its lowest candidate above it. A sweep visits the genres in label order and moves each,
    the others fixed, to its best candidate (all scored at once, since the others' counts
    are constant), only on a strict improvement; sweeps stop when none moved, or after
    MAX_SWEEPS.
    """
    tp, fp, fn = _counts(y, scores, grid)
    f1 = _f1(tp, fp, fn)
    allowed = _within_cap(tp, fp, y, max_predicted_ratio)
    n_labels = y.shape[1]
    rows = np.arange(n_labels)
    start = int(np.argmin(np.abs(grid - micro_threshold(y, scores, grid))))
    at = np.maximum(start, allowed.argmax(axis=1))  # allowed is False, then True, along the grid

    def value(tp_sum: np.ndarray, fp_sum: np.ndarray, fn_sum: np.ndarray, f1_sum: np.ndarray):
        return macro_weight * f1_sum / n_labels + (1 - macro_weight) * _f1(tp_sum, fp_sum, fn_sum)

    current = value(tp[rows, at].sum(), fp[rows, at].sum(), fn[rows, at].sum(), f1[rows, at].sum())
    for _ in range(MAX_SWEEPS):
        moved = False
        for j in range(n_labels):
            others = rows != j
            fixed = [a[others, at[others]].sum() for a in (tp, fp, fn, f1)]
            values = value(fixed[0] + tp[j], fixed[1] + fp[j], fixed[2] + fn[j], fixed[3] + f1[j])
            values = np.where(allowed[j], values, -np.inf)
            if values.max() > current + 1e-9:
                at[j], current, moved = _middle_best(values), float(values.max()), True
        if not moved:
            break
    return grid[at].astype(np.float64)


def choose_thresholds(
    y: np.ndarray,
    scores: np.ndarray,
    objective: Objective = "balanced",
    macro_weight: float = MACRO_WEIGHT,
    max_predicted_ratio: float = MAX_PREDICTED_RATIO,
) -> np.ndarray:
    """One threshold per label for `objective`, from labels y and held-out scores [n, n_labels].

    `macro_weight` and `max_predicted_ratio` apply to the balanced objective only.
    """
    if objective == "macro":
        return macro_thresholds(y, scores)
    if objective == "micro":
        return np.full(y.shape[1], micro_threshold(y, scores))
    if objective == "balanced":
        return balanced_thresholds(y, scores, macro_weight, max_predicted_ratio=max_predicted_ratio)
    raise ValueError(f"unknown threshold objective {objective!r}; choose one of {OBJECTIVES}")
