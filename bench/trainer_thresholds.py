"""Threshold policies on the yardstick, from the scores that `trainer_levers.py --scores` kept.

    python bench/trainer_thresholds.py data/levers/scores/tall+flip.npz

Each fold's thresholds are chosen from that fold's out-of-fold training scores only (as
`train` chooses them), and judged on the held-out fold's scores: the heads are not
retrained, so a policy costs seconds. Policies: the balanced objective at several macro
weights and caps, and never giving a genre whose out-of-fold F1 at its threshold is below
a floor (`--floors`; 0 gives every genre). Prints mean and standard deviation over the
folds as JSON.
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
        keys = ("tuned_rows", "tuned_scores", "test_rows", "test_scores")
        return y, [{key: data[f"{key}_{j}"] for key in keys} for j in range(k)]


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
    y: np.ndarray, kept: list[dict[str, np.ndarray]], weight: float, floor: float, ratio: float
) -> dict[str, Any]:
    """Mean and spread of macro and micro F1 over the folds for one policy."""
    from poster_genres.trainer.evaluation import evaluate
    from poster_genres.trainer.thresholds import choose_thresholds

    results = []
    for fold in kept:
        tuned_y = y[fold["tuned_rows"]]
        thresholds = choose_thresholds(tuned_y, fold["tuned_scores"], "balanced", weight, ratio)
        thresholds = abstain_below(tuned_y, fold["tuned_scores"], thresholds, floor)
        names = [str(j) for j in range(y.shape[1])]
        results.append(evaluate(y[fold["test_rows"]], fold["test_scores"], thresholds, names))
    out: dict[str, Any] = {"weight": weight, "min_genre_f1": floor, "cap": ratio}
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
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    y, kept = folds(args.scores)
    rows = [
        policy_figures(y, kept, float(w), float(f), float(c))
        for w in args.weights.split(",")
        for f in args.floors.split(",")
        for c in args.caps.split(",")
    ]
    print(json.dumps({"scores": str(args.scores), "folds": len(kept), "policies": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
