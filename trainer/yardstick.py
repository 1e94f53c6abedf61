"""The yardstick: quality on films the model never saw, as a mean and spread over hash folds.

One test split of a few hundred films moves macro F1 by a point or more with the seed
alone, and rare genres have a handful of films in it. The yardstick cuts the whole
labelled set into K disjoint folds by the hash of each film's TMDB id (`trainer.split.
bucket`: fold j holds the films whose point lies in [j/K, (j+1)/K)), and for each fold
runs the whole training recipe on the other folds (heads, out-of-fold scores, thresholds,
caps: every choice) and scores the fold. It reports the mean and the standard deviation
of the K figures, and the per-genre figures of all K folds' decisions pooled, so every
film counts once as an unseen film.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from poster_genres.trainer.evaluation import evaluate
from poster_genres.trainer.fit import fit
from poster_genres.trainer.split import Split, bucket

if TYPE_CHECKING:
    from poster_genres.trainer.settings import TrainSettings

log = logging.getLogger(__name__)

HEADLINE = ("macro_f1", "micro_f1", "samples_f1")
# (train rows, test rows) -> (scores [len(test), n_labels], thresholds [n_labels])
FitAndScore = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def hash_folds(tmdb_ids: Sequence[int] | np.ndarray, k: int) -> list[np.ndarray]:
    """Rows of each of K disjoint folds, by the hash point of each film's TMDB id."""
    if k < 2:
        raise ValueError(f"the yardstick needs at least 2 folds, not {k}")
    points = np.fromiter((bucket(i) for i in tmdb_ids), dtype=np.float64, count=len(tmdb_ids))
    which = np.minimum((points * k).astype(int), k - 1)
    return [np.flatnonzero(which == j) for j in range(k)]


def inner_split(
    rows: np.ndarray, tmdb_ids: Sequence[int] | np.ndarray, k: int, val_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Training `rows` cut into (train, validation) by where each film lies within its fold.

    The outer folds use the hash point's first digit in base K; this uses the rest of it,
    so every fold's films are split alike and no fold is left without validation films.
    """
    points = np.fromiter((bucket(tmdb_ids[r]) for r in rows), dtype=np.float64, count=len(rows))
    within = points * k % 1.0
    return rows[within >= val_fraction], rows[within < val_fraction]


def cross_validate(
    fit_and_score: FitAndScore,
    y: np.ndarray,
    tmdb_ids: Sequence[int] | np.ndarray,
    labels: Sequence[str],
    k: int = 5,
) -> dict[str, Any]:
    """Train on K-1 folds and score the K-th, K times; the figures of each fold and summary."""
    folds = hash_folds(tmdb_ids, k)
    scores = np.zeros(y.shape, np.float32)
    decisions = np.zeros(y.shape, np.float32)
    per_fold = []
    for j, test in enumerate(folds):
        train = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != j]))
        fold_scores, thresholds = fit_and_score(train, test)
        scores[test] = fold_scores
        decisions[test] = fold_scores >= np.asarray(thresholds)[None, :]
        result = evaluate(y[test], fold_scores, thresholds, labels)
        per_fold.append({key: result[key] for key in ("n", *HEADLINE)})
        log.info(
            "yardstick fold %d/%d: macro F1 %.4f, micro F1 %.4f on %d films",
            j + 1,
            k,
            result["macro_f1"],
            result["micro_f1"],
            result["n"],
        )
    return summarise(per_fold, evaluate(y, decisions, np.full(len(labels), 0.5), labels))


def summarise(per_fold: list[dict[str, Any]], pooled: dict[str, Any]) -> dict[str, Any]:
    """Mean, standard deviation (across folds), min and max of each headline metric."""
    out: dict[str, Any] = {"folds": len(per_fold), "films": int(sum(f["n"] for f in per_fold))}
    for key in HEADLINE:
        values = np.asarray([f[key] for f in per_fold], dtype=np.float64)
        out[key] = round(float(values.mean()), 4)
        out[f"{key}_sd"] = round(float(values.std(ddof=1)), 4)
        out[f"{key}_min"] = round(float(values.min()), 4)
        out[f"{key}_max"] = round(float(values.max()), 4)
    out["per_fold"] = per_fold
    out["pooled_per_genre"] = [
        {k: v for k, v in row.items() if k != "threshold"} for row in pooled["per_genre"]
    ]
    return out


def head_recipe(
    x: np.ndarray,
    y: np.ndarray,
    tmdb_ids: np.ndarray,
    settings: TrainSettings,
    k: int,
    keep: list[dict[str, np.ndarray]] | None = None,
) -> FitAndScore:
    """The trainer's head training and thresholds on embeddings x [n, dim], as a `FitAndScore`.

    The training rows (K-1 of `k` hash folds) are split into train and validation by hash
    (`inner_split`; the cross-fit uses both), so a fold runs the very recipe of `train`.
    With `keep`, each fold appends its rows and scores, to study thresholds without retraining.
    """

    def run(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fit_rows, validation = inner_split(train, tmdb_ids, k, settings.val_fraction)
        fitted = fit(x, y, Split(fit_rows, validation, test), settings)
        scores = fitted.head.predict(x[test], verbose=0)
        if keep is not None:
            keep.append(
                {
                    "tuned_rows": fitted.tuned_rows,
                    "tuned_scores": fitted.tuned_scores,
                    # the served (averaged) head on the same films, which it trained on
                    "ensemble_tuned_scores": fitted.head.predict(x[fitted.tuned_rows], verbose=0),
                    "test_rows": test,
                    "test_scores": scores,
                }
            )
        return scores, fitted.thresholds

    return run
