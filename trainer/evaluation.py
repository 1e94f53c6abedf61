"""Per-genre thresholds, the evaluation report (JSON and PNG), and training curves."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from poster_genres.trainer.split import Split, films_digest
from poster_genres.trainer.thresholds import macro_thresholds

if TYPE_CHECKING:
    from poster_genres.trainer.examples import Examples
    from poster_genres.trainer.fit import Fitted

log = logging.getLogger(__name__)


def tune_thresholds(y: np.ndarray, scores: np.ndarray, default: float = 0.5) -> np.ndarray:
    """One threshold per label that maximises that label's F1 (the `macro` objective)."""
    return macro_thresholds(y, scores, default)


def evaluate(
    y: np.ndarray,
    scores: np.ndarray,
    thresholds: Sequence[float] | np.ndarray,
    labels: Sequence[str],
) -> dict[str, Any]:
    """Macro, micro and samples F1, and precision, recall, F1 and support per genre."""
    y = (y > 0).astype(int)
    decisions = (scores >= np.asarray(thresholds)[None, :]).astype(int)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, decisions, average=None, zero_division=0
    )
    per_genre = [
        {
            "genre": label,
            "precision": round(float(precision[j]), 4),
            "recall": round(float(recall[j]), 4),
            "f1": round(float(f1[j]), 4),
            "support": int(support[j]),
            "threshold": round(float(thresholds[j]), 4),
        }
        for j, label in enumerate(labels)
    ]
    return {
        "n": len(y),
        "macro_f1": round(float(f1_score(y, decisions, average="macro", zero_division=0)), 4),
        "micro_f1": round(float(f1_score(y, decisions, average="micro", zero_division=0)), 4),
        "samples_f1": round(float(f1_score(y, decisions, average="samples", zero_division=0)), 4),
        "per_genre": per_genre,
    }


def evaluate_fit(fitted: Fitted, examples: Examples, split: Split, folds: int) -> dict[str, Any]:
    """The report: metrics at tuned thresholds and at 0.5, history, and which films it measured."""
    x, y, labels = examples.x, examples.labels.y, examples.labels.names
    half = np.full(len(labels), 0.5)
    report: dict[str, Any] = {
        "validation": evaluate(fitted.tuned_y, fitted.tuned_scores, fitted.thresholds, labels),
        "validation_at_0.5": evaluate(fitted.tuned_y, fitted.tuned_scores, half, labels),
        "folds": folds,
    }
    if len(split.test):
        test_scores = fitted.head.predict(x[split.test], verbose=0)
        report["test"] = evaluate(y[split.test], test_scores, fitted.thresholds, labels)
        report["test_at_0.5"] = evaluate(y[split.test], test_scores, half, labels)
    report["history"] = fitted.history
    report["best_epoch"] = fitted.best_epoch
    name, rows = ("test", split.test) if len(split.test) else ("validation", fitted.tuned_rows)
    films = report["evaluation_films"] = {"split": name, **films_digest(examples.tmdb_ids[rows])}
    log.info(
        "%s macro F1 %.3f, micro F1 %.3f on %d films (sha256 %s; best epoch %d, "
        "head trained in %.1fs)",
        name,
        report[name]["macro_f1"],
        report[name]["micro_f1"],
        films["count"],
        str(films["sha256"])[:12],
        fitted.best_epoch,
        fitted.seconds,
    )
    return report


def write_run_report(
    report: Mapping[str, Any], skipped: Mapping[int, str], out_dir: Path
) -> list[Path]:
    """Write the report (`write_report`), the curves and the skipped posters to `out_dir`."""
    files = write_report(report, out_dir)
    files.append(plot_curves(report["history"], out_dir / "curves.png"))
    skipped_path = out_dir / "skipped_posters.json"
    skipped_path.write_text(json.dumps(dict(skipped), indent=1), "utf-8")
    return [*files, skipped_path]


def write_report(report: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write `metrics.json` and `per_genre.png` (precision, recall, F1 per genre) to `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "metrics.json"
    json_path.write_text(json.dumps(report, indent=2), "utf-8")
    evaluation = report.get("test") or report["validation"]
    rows = evaluation["per_genre"]
    names = [f"{r['genre']} ({r['support']})" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4.5))
    bars = [("precision", "#4c72b0"), ("recall", "#dd8452"), ("f1", "#55a868")]
    for k, (key, colour) in enumerate(bars):
        ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=key, color=colour)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title(
        f"{'test' if report.get('test') else 'validation'} split: "
        f"macro F1 {evaluation['macro_f1']:.3f}, "
        f"micro F1 {evaluation['micro_f1']:.3f}"
    )
    ax.legend(loc="upper right")
    fig.tight_layout()
    png_path = out_dir / "per_genre.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return [json_path, png_path]


def plot_curves(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Loss and macro F1 per epoch, training and validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ["loss", "macro_f1"], strict=True):
        for prefix, style in [("", "-"), ("val_", "--")]:
            values = history.get(prefix + metric)
            if values:
                label = (prefix or "train_") + metric
                ax.plot(range(1, len(values) + 1), values, style, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
