"""Threshold policies on the yardstick, from the scores that `trainer_levers.py --scores` kept.

    python bench/trainer_thresholds.py data/levers/scores/tall+flip.npz

Each fold's thresholds are chosen from that fold's out-of-fold training scores only (as
`train` chooses them), and judged on the held-out fold's scores: the heads are not
retrained, so a policy costs seconds. Policies: the balanced objective at several macro
weights and caps, and never giving a genre whose out-of-fold F1 at its threshold is below
a floor (`--floors`; 0 gives every genre), and giving a film at most its K genres that
pass their thresholds by the widest ratio of score to threshold (`--top-k`; 0 gives all).
Prints mean and standard deviation over the folds as JSON, with `no_genre`, the share of
held-out films given no genre at all.

`--blend OTHER` averages the scores with another lever's, kept on the same folds (an
ensemble of two models: both run at serving).

The thresholds are tuned on out-of-fold scores, each from heads that did not see the
film, and applied to the average of all heads, whose scores spread less. `share_ratio`
gives, per genre, the share of held-out films the thresholds predict it for over the
share they predicted it for out of fold. With `--by-rate` each policy is also run with its
thresholds carried to the averaged head's scale: per genre, the threshold at which the
averaged head, on the films it was tuned on (and trained on), predicts the genre for the
same share of films as the tuned threshold did out of fold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def folds(path: Path) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """The labels and each fold's kept arrays."""
    with np.load(path) as data:
        y = data["y"]
        k = sum(1 for name in data.files if name.startswith("test_rows_"))
        keys = ("tuned_rows", "tuned_scores", "ensemble_tuned_scores", "test_rows", "test_scores")
        return y, [
            {key: data[f"{key}_{j}"] for key in keys if f"{key}_{j}" in data.files}
            for j in range(k)
        ]


def by_rate(thresholds: np.ndarray, tuned: np.ndarray, ensemble: np.ndarray) -> np.ndarray:
    """Thresholds on the averaged head's scale that predict each genre as often as `thresholds`
    did on the out-of-fold scores `tuned`; `ensemble` is the averaged head on the same films."""
    out = np.array(thresholds, dtype=np.float64)
    for j, threshold in enumerate(thresholds):
        share = float((tuned[:, j] >= threshold).mean())
        if 0 < share < 1:
            out[j] = float(np.quantile(ensemble[:, j], 1 - share))
    return out


def blended(
    kept: list[dict[str, np.ndarray]], other: list[dict[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Each fold's scores averaged with another lever's on the same rows."""
    out = []
    for mine, theirs in zip(kept, other, strict=True):
        for rows in ("tuned_rows", "test_rows"):
            if not np.array_equal(mine[rows], theirs[rows]):
                raise ValueError("the two score files were not kept on the same folds")
        out.append(
            {
                key: (value + theirs[key]) / 2 if key.endswith("scores") else value
                for key, value in mine.items()
                if key in theirs
            }
        )
    return out


def at_most(scores: np.ndarray, thresholds: np.ndarray, k: int) -> np.ndarray:
    """Decisions: genres at or over their threshold, at most the `k` widest per film (0: all)."""
    decisions = scores >= thresholds[None, :]
    if k <= 0:
        return decisions
    margin = scores / np.maximum(thresholds, 1e-9)[None, :]
    rank = np.argsort(np.argsort(-margin, axis=1), axis=1)
    return decisions & (rank < k)


def abstain_below(
    y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, floor: float
) -> np.ndarray:
    """Threshold 1.0 (never given) for genres whose held-out F1 is below `floor`."""
    if floor <= 0:
        return thresholds
    decisions = scores > np.asarray(thresholds)[None, :]
    truth = y > 0
    tp = (decisions & truth).sum(axis=0)
    fp, fn = (decisions & ~truth).sum(axis=0), truth.sum(axis=0) - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return np.where(f1 < floor, 1.0, thresholds)


def policy_figures(
    y: np.ndarray,
    kept: list[dict[str, np.ndarray]],
    weight: float,
    floor: float,
    ratio: float,
    rate: bool = False,
    top_k: int = 0,
) -> dict[str, Any]:
    """Mean and spread of macro and micro F1 over the folds for one policy."""
    from poster_genres.trainer.evaluation import evaluate
    from poster_genres.trainer.thresholds import choose_thresholds

    results, shares, silent = [], [], []
    names, half = [str(j) for j in range(y.shape[1])], np.full(y.shape[1], 0.5)
    for fold in kept:
        tuned_y = y[fold["tuned_rows"]]
        thresholds = choose_thresholds(tuned_y, fold["tuned_scores"], "balanced", weight, ratio)
        thresholds = abstain_below(tuned_y, fold["tuned_scores"], thresholds, floor)
        intended = (fold["tuned_scores"] >= thresholds).mean(axis=0)
        if rate:
            thresholds = by_rate(thresholds, fold["tuned_scores"], fold["ensemble_tuned_scores"])
        shares.append((fold["test_scores"] >= thresholds).mean(axis=0) / np.maximum(intended, 1e-9))
        decisions = at_most(fold["test_scores"], thresholds, top_k)
        silent.append(float((~decisions.any(axis=1)).mean()))
        results.append(evaluate(y[fold["test_rows"]], decisions.astype(np.float32), half, names))
    out: dict[str, Any] = {
        "weight": weight,
        "min_genre_f1": floor,
        "cap": ratio,
        "by_rate": rate,
        "top_k": top_k,
    }
    out["no_genre"] = round(float(np.mean(silent)), 4)
    out["share_ratio"] = [round(float(v), 2) for v in np.mean(shares, axis=0)]
    for key in ("macro_f1", "micro_f1"):
        values = [r[key] for r in results]
        out[key] = round(float(np.mean(values)), 4)
        out[f"{key}_sd"] = round(float(np.std(values, ddof=1)), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", type=Path)
    parser.add_argument("--weights", default="0.85,0.75,0.65")
    parser.add_argument("--floors", default="0,0.05,0.1")
    parser.add_argument("--caps", default="1.5")
    parser.add_argument("--by-rate", action="store_true", help="also carry thresholds by rate")
    parser.add_argument(
        "--top-k", default="0", help="most genres per film, comma-separated; 0 = all"
    )
    parser.add_argument("--blend", type=Path, help="another lever's kept scores to average with")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    y, kept = folds(args.scores)
    if args.blend is not None:
        kept = blended(kept, folds(args.blend)[1])
    if args.by_rate and any("ensemble_tuned_scores" not in fold for fold in kept):
        parser.error(f"{args.scores} has no ensemble_tuned_scores: rerun trainer_levers.py")
    rows = [
        policy_figures(y, kept, float(w), float(f), float(c), rate, int(k))
        for w in args.weights.split(",")
        for f in args.floors.split(",")
        for c in args.caps.split(",")
        for rate in ((False, True) if args.by_rate else (False,))
        for k in args.top_k.split(",")
    ]
    print(json.dumps({"scores": str(args.scores), "folds": len(kept), "policies": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
